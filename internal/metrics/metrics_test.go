package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

const (
	expiration = "servicetoken_expiration_timestamp_seconds"
	renewal    = "servicetoken_renewal_timestamp_seconds"
	ready      = "servicetoken_ready_status"
	rotations  = "servicetoken_rotations_total"
	refreshes  = "servicetoken_refreshes_total"
	idChanges  = "servicetoken_token_id_changes_total"
)

// token builds a ServiceToken; ready is the Ready condition status, "" for none.
func token(ns, name string, expires, renews *time.Time, ready metav1.ConditionStatus) *v1alpha1.ServiceToken {
	st := &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	st.Spec.AccountRef.Name = "acct"
	st.Status.TokenID = "token-id-" + name
	st.Status.ClientID = "client-id-" + name + ".access"
	if expires != nil {
		st.Status.ExpiresAt = &metav1.Time{Time: *expires}
	}
	if renews != nil {
		st.Status.RenewalTime = &metav1.Time{Time: *renews}
	}
	if ready != "" {
		st.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: ready, Reason: "Test", LastTransitionTime: metav1.Now()}}
	}
	return st
}

var (
	expiresAt   = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) // 1893553445
	renewalTime = time.Date(2029, 9, 1, 0, 0, 0, 0, time.UTC) // 1882915200
)

// fixtures: team-a/api expires and is Ready; team-b/batch is a "forever"
// token (no expiresAt, no renewalTime) that is not Ready.
func fixtures() []client.Object {
	return []client.Object{
		token("team-a", "api", &expiresAt, &renewalTime, metav1.ConditionTrue),
		token("team-b", "batch", nil, nil, metav1.ConditionFalse),
	}
}

func newReader(t *testing.T, objs ...client.Object) client.WithWatch {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}

func TestCollectorEmitsGaugesAndZeroCountersForEachToken(t *testing.T) {
	g := NewWithT(t)
	c := NewServiceTokenCollector(newReader(t, fixtures()...))

	// No metric names: the whole output must match, so nothing else (no
	// token ID, client ID or secret) can be emitted.
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(`
# HELP servicetoken_expiration_timestamp_seconds When the ServiceToken's Cloudflare token expires (status.expiresAt), in Unix seconds. No sample for tokens that never expire.
# TYPE servicetoken_expiration_timestamp_seconds gauge
servicetoken_expiration_timestamp_seconds{name="api",namespace="team-a"} 1893553445
# HELP servicetoken_renewal_timestamp_seconds When the operator next refreshes or rotates the token (status.renewalTime), in Unix seconds.
# TYPE servicetoken_renewal_timestamp_seconds gauge
servicetoken_renewal_timestamp_seconds{name="api",namespace="team-a"} 1882915200
# HELP servicetoken_ready_status The ServiceToken's Ready condition: 1 for its status (true, false or unknown), 0 for the other two. No Ready condition counts as unknown.
# TYPE servicetoken_ready_status gauge
servicetoken_ready_status{condition="false",name="api",namespace="team-a"} 0
servicetoken_ready_status{condition="true",name="api",namespace="team-a"} 1
servicetoken_ready_status{condition="unknown",name="api",namespace="team-a"} 0
servicetoken_ready_status{condition="false",name="batch",namespace="team-b"} 1
servicetoken_ready_status{condition="true",name="batch",namespace="team-b"} 0
servicetoken_ready_status{condition="unknown",name="batch",namespace="team-b"} 0
# HELP servicetoken_rotations_total Client secret rotations made by this operator process for the ServiceToken.
# TYPE servicetoken_rotations_total counter
servicetoken_rotations_total{name="api",namespace="team-a"} 0
servicetoken_rotations_total{name="batch",namespace="team-b"} 0
# HELP servicetoken_refreshes_total Expiry refreshes made by this operator process for the ServiceToken.
# TYPE servicetoken_refreshes_total counter
servicetoken_refreshes_total{name="api",namespace="team-a"} 0
servicetoken_refreshes_total{name="batch",namespace="team-b"} 0
# HELP servicetoken_lost_rotations_total Rotations whose response Cloudflare committed but never delivered, so that recovering revoked the secret workloads held before its grace period ended (docs/renewal.md).
# TYPE servicetoken_lost_rotations_total counter
servicetoken_lost_rotations_total{name="api",namespace="team-a"} 0
servicetoken_lost_rotations_total{name="batch",namespace="team-b"} 0
# HELP servicetoken_token_id_changes_total Times this operator process gave the ServiceToken a token with a new ID (a recreate after the token was deleted in Cloudflare, a zone token's replacement): Access policies naming the old ID no longer admit it (docs/access-policies.md).
# TYPE servicetoken_token_id_changes_total counter
servicetoken_token_id_changes_total{name="api",namespace="team-a"} 0
servicetoken_token_id_changes_total{name="batch",namespace="team-b"} 0
`))).To(Succeed())

	// Spelled out: the forever token has no expiration or renewal sample.
	g.Expect(testutil.CollectAndCount(c, expiration)).To(Equal(1))
	g.Expect(testutil.CollectAndCount(c, renewal)).To(Equal(1))
}

func TestCollectorReadyStatusUnknownWithoutReadyCondition(t *testing.T) {
	g := NewWithT(t)
	c := NewServiceTokenCollector(newReader(t, token("ns", "fresh", nil, nil, ""), token("ns", "odd", nil, nil, metav1.ConditionUnknown)))

	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(`
# HELP servicetoken_ready_status The ServiceToken's Ready condition: 1 for its status (true, false or unknown), 0 for the other two. No Ready condition counts as unknown.
# TYPE servicetoken_ready_status gauge
servicetoken_ready_status{condition="false",name="fresh",namespace="ns"} 0
servicetoken_ready_status{condition="true",name="fresh",namespace="ns"} 0
servicetoken_ready_status{condition="unknown",name="fresh",namespace="ns"} 1
servicetoken_ready_status{condition="false",name="odd",namespace="ns"} 0
servicetoken_ready_status{condition="true",name="odd",namespace="ns"} 0
servicetoken_ready_status{condition="unknown",name="odd",namespace="ns"} 1
`), ready)).To(Succeed())
}

const countersHeader = `
# HELP servicetoken_rotations_total Client secret rotations made by this operator process for the ServiceToken.
# TYPE servicetoken_rotations_total counter
# HELP servicetoken_refreshes_total Expiry refreshes made by this operator process for the ServiceToken.
# TYPE servicetoken_refreshes_total counter
`

func TestCollectorCountsRecordedRotationsAndRefreshes(t *testing.T) {
	g := NewWithT(t)
	c := NewServiceTokenCollector(newReader(t, fixtures()...))

	c.RecordRotation("team-a", "api")
	c.RecordRotation("team-a", "api")
	c.RecordRefresh("team-a", "api")
	c.RecordRefresh("team-b", "batch")
	c.RecordTokenIDChange("team-b", "batch")

	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(countersHeader+`
servicetoken_rotations_total{name="api",namespace="team-a"} 2
servicetoken_rotations_total{name="batch",namespace="team-b"} 0
servicetoken_refreshes_total{name="api",namespace="team-a"} 1
servicetoken_refreshes_total{name="batch",namespace="team-b"} 1
`), rotations, refreshes)).To(Succeed())
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(`
# HELP servicetoken_token_id_changes_total Times this operator process gave the ServiceToken a token with a new ID (a recreate after the token was deleted in Cloudflare, a zone token's replacement): Access policies naming the old ID no longer admit it (docs/access-policies.md).
# TYPE servicetoken_token_id_changes_total counter
servicetoken_token_id_changes_total{name="api",namespace="team-a"} 0
servicetoken_token_id_changes_total{name="batch",namespace="team-b"} 1
`), idChanges)).To(Succeed())
}

func TestCollectorDropsSeriesOfDeletedToken(t *testing.T) {
	g := NewWithT(t)
	objs := fixtures()
	reader := newReader(t, objs...)
	c := NewServiceTokenCollector(reader)
	c.RecordRotation("team-a", "api")
	c.RecordRefresh("team-a", "api")
	g.Expect(testutil.CollectAndCount(c)).To(Equal(16)) // api: 2+3+4, batch: 3+4

	g.Expect(reader.Delete(context.Background(), objs[0])).To(Succeed())

	for _, name := range []string{expiration, renewal} {
		g.Expect(testutil.CollectAndCount(c, name)).To(Equal(0), name)
	}
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(`
# HELP servicetoken_ready_status The ServiceToken's Ready condition: 1 for its status (true, false or unknown), 0 for the other two. No Ready condition counts as unknown.
# TYPE servicetoken_ready_status gauge
servicetoken_ready_status{condition="false",name="batch",namespace="team-b"} 1
servicetoken_ready_status{condition="true",name="batch",namespace="team-b"} 0
servicetoken_ready_status{condition="unknown",name="batch",namespace="team-b"} 0
`+countersHeader+`
servicetoken_rotations_total{name="batch",namespace="team-b"} 0
servicetoken_refreshes_total{name="batch",namespace="team-b"} 0
`), ready, rotations, refreshes)).To(Succeed())

	// The scrape also dropped api's counts: a new token of the same name
	// starts from zero instead of inheriting them.
	g.Expect(reader.Create(context.Background(), token("team-a", "api", nil, nil, metav1.ConditionTrue))).To(Succeed())
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(countersHeader+`
servicetoken_rotations_total{name="api",namespace="team-a"} 0
servicetoken_rotations_total{name="batch",namespace="team-b"} 0
servicetoken_refreshes_total{name="api",namespace="team-a"} 0
servicetoken_refreshes_total{name="batch",namespace="team-b"} 0
`), rotations, refreshes)).To(Succeed())
}

// recordingReader records a rotation while the collector lists, as the
// controller may for a token created after the listing was taken.
type recordingReader struct {
	client.Reader
	counters *Counters
}

func (r recordingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	err := r.Reader.List(ctx, list, opts...)
	r.counters.RecordRotation("team-c", "new")
	return err
}

func TestCollectorKeepsCountsRecordedDuringList(t *testing.T) {
	g := NewWithT(t)
	reader := newReader(t, fixtures()...)
	c := NewServiceTokenCollector(nil)
	c.reader = recordingReader{Reader: reader, counters: &c.Counters}

	g.Expect(testutil.CollectAndCount(c, rotations)).To(Equal(2)) // team-c/new not listed yet

	c.reader = reader
	g.Expect(reader.Create(context.Background(), token("team-c", "new", nil, nil, metav1.ConditionTrue))).To(Succeed())
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(`
# HELP servicetoken_rotations_total Client secret rotations made by this operator process for the ServiceToken.
# TYPE servicetoken_rotations_total counter
servicetoken_rotations_total{name="api",namespace="team-a"} 0
servicetoken_rotations_total{name="batch",namespace="team-b"} 0
servicetoken_rotations_total{name="new",namespace="team-c"} 1
`), rotations)).To(Succeed())
}

func TestCountersForget(t *testing.T) {
	g := NewWithT(t)
	c := NewServiceTokenCollector(newReader(t, fixtures()...))
	c.RecordRotation("team-a", "api")
	c.RecordRefresh("team-a", "api")

	c.Forget("team-a", "api")

	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(countersHeader+`
servicetoken_rotations_total{name="api",namespace="team-a"} 0
servicetoken_rotations_total{name="batch",namespace="team-b"} 0
servicetoken_refreshes_total{name="api",namespace="team-a"} 0
servicetoken_refreshes_total{name="batch",namespace="team-b"} 0
`), rotations, refreshes)).To(Succeed())
}

type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("cache not synced")
}

func TestCollectorEmitsNothingWhenListFails(t *testing.T) {
	g := NewWithT(t)
	c := NewServiceTokenCollector(failingReader{})
	c.RecordRotation("team-a", "api")

	// CollectAndCount fails the test on an invalid metric; none is sent,
	// so a failed List does not fail the whole scrape.
	g.Expect(testutil.CollectAndCount(c)).To(Equal(0))

	// The counts survive a failed List: nothing was pruned.
	c.reader = newReader(t, fixtures()...)
	g.Expect(testutil.CollectAndCompare(c, strings.NewReader(`
# HELP servicetoken_rotations_total Client secret rotations made by this operator process for the ServiceToken.
# TYPE servicetoken_rotations_total counter
servicetoken_rotations_total{name="api",namespace="team-a"} 1
servicetoken_rotations_total{name="batch",namespace="team-b"} 0
`), rotations)).To(Succeed())
}

func TestRegisterToleratesAlreadyRegistered(t *testing.T) {
	g := NewWithT(t)
	reader := newReader(t, fixtures()...)
	t.Cleanup(func() { crmetrics.Registry.Unregister(NewServiceTokenCollector(nil)) })

	first, err := Register(reader)
	g.Expect(err).NotTo(HaveOccurred())
	second, err := Register(reader)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(second).To(BeIdenticalTo(first), "counts must go to the collector being scraped")

	second.RecordRotation("team-a", "api")
	g.Expect(testutil.GatherAndCompare(crmetrics.Registry, strings.NewReader(`
# HELP servicetoken_rotations_total Client secret rotations made by this operator process for the ServiceToken.
# TYPE servicetoken_rotations_total counter
servicetoken_rotations_total{name="api",namespace="team-a"} 1
servicetoken_rotations_total{name="batch",namespace="team-b"} 0
`), rotations)).To(Succeed())
}

func TestCollectorKeepsLabelPairsOfTokensInCacheOnly(t *testing.T) {
	g := NewWithT(t)
	objs := fixtures()
	reader := newReader(t, objs...)
	c := NewServiceTokenCollector(reader)
	reg := prometheus.NewPedanticRegistry()
	g.Expect(reg.Register(c)).To(Succeed())

	labelsOf := func() map[string]*dto.LabelPair { // first label pair of each series, by series
		fams, err := reg.Gather()
		g.Expect(err).NotTo(HaveOccurred())
		out := map[string]*dto.LabelPair{}
		for _, f := range fams {
			for _, m := range f.GetMetric() {
				key := f.GetName()
				for _, lp := range m.GetLabel() {
					key += "," + lp.GetName() + "=" + lp.GetValue()
				}
				out[key] = m.GetLabel()[0]
			}
		}
		return out
	}
	first, second := labelsOf(), labelsOf()
	g.Expect(first).To(HaveLen(16))
	for k, lp := range first {
		g.Expect(second[k]).To(BeIdenticalTo(lp), "label pairs are kept between scrapes: %s", k)
	}
	g.Expect(c.labels.tokens).To(HaveLen(2))

	g.Expect(reader.Delete(context.Background(), objs[0])).To(Succeed())
	g.Expect(labelsOf()).To(HaveLen(7))
	g.Expect(c.labels.tokens).To(HaveLen(1), "a deleted token's label pairs are dropped")
}
