// Package metrics exposes Prometheus metrics about ServiceTokens.
//
// The gauges are not kept in GaugeVecs updated by the controller: they are
// computed at scrape time from the informer cache. A ServiceToken that is
// deleted is gone from the cache, so its series vanish with it, and no code
// path has to remember to delete label values.
//
// Rotations and refreshes are events, not state the cache holds, so the
// controller records them in Counters. They too are only emitted for
// ServiceTokens still in the cache.
package metrics

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// listTimeout bounds the cache List done on each scrape. Listing a synced
// cache is an in-memory copy; the bound only matters before the cache has
// synced, when a List would otherwise wait and hold up the scrape.
const listTimeout = 5 * time.Second

var labels = []string{"namespace", "name"}

var (
	expirationDesc = prometheus.NewDesc("servicetoken_expiration_timestamp_seconds",
		"When the ServiceToken's Cloudflare token expires (status.expiresAt), in Unix seconds. No sample for tokens that never expire.",
		labels, nil)
	renewalDesc = prometheus.NewDesc("servicetoken_renewal_timestamp_seconds",
		"When the operator next refreshes or rotates the token (status.renewalTime), in Unix seconds.",
		labels, nil)
	readyDesc = prometheus.NewDesc("servicetoken_ready_status",
		"The ServiceToken's Ready condition: 1 for its status (true, false or unknown), 0 for the other two. No Ready condition counts as unknown.",
		[]string{"namespace", "name", "condition"}, nil)
	rotationsDesc = prometheus.NewDesc("servicetoken_rotations_total",
		"Client secret rotations made by this operator process for the ServiceToken.",
		labels, nil)
	refreshesDesc = prometheus.NewDesc("servicetoken_refreshes_total",
		"Expiry refreshes made by this operator process for the ServiceToken.",
		labels, nil)
	lostRotationsDesc = prometheus.NewDesc("servicetoken_lost_rotations_total",
		"Rotations whose response Cloudflare committed but never delivered, so that recovering revoked the secret workloads held before its grace period ended (docs/renewal.md).",
		labels, nil)
	tokenIDChangesDesc = prometheus.NewDesc("servicetoken_token_id_changes_total",
		"Times this operator process gave the ServiceToken a token with a new ID (a recreate after the token was deleted in Cloudflare, a zone token's replacement): Access policies naming the old ID no longer admit it (docs/access-policies.md).",
		labels, nil)
)

// conditionValues are the label values of servicetoken_ready_status; every
// token gets all three, like kube-state-metrics, so alerts can match on
// condition="true" == 0 without caring which of the others is set.
var conditionValues = []string{"true", "false", "unknown"}

// Counters counts the rotations and refreshes the controller makes, per
// ServiceToken. The zero value is ready to use; it is safe for concurrent use.
type Counters struct {
	mu     sync.Mutex
	seq    uint64 // bumped on every record, see prune
	counts map[types.NamespacedName]*counts
}

type counts struct {
	rotations, refreshes, lostRotations, tokenIDChanges float64
	seq                                                 uint64 // Counters.seq at the last record
}

// RecordRotation counts one rotation of the client secret.
func (c *Counters) RecordRotation(namespace, name string) {
	c.record(namespace, name, func(n *counts) { n.rotations++ })
}

// RecordRefresh counts one refresh of the expiry.
func (c *Counters) RecordRefresh(namespace, name string) {
	c.record(namespace, name, func(n *counts) { n.refreshes++ })
}

// RecordLostRotation counts one recovery from a lost rotate response that
// revoked the held secret early.
func (c *Counters) RecordLostRotation(namespace, name string) {
	c.record(namespace, name, func(n *counts) { n.lostRotations++ })
}

// RecordTokenIDChange counts one change of the token's ID.
func (c *Counters) RecordTokenIDChange(namespace, name string) {
	c.record(namespace, name, func(n *counts) { n.tokenIDChanges++ })
}

// Forget drops the counts of a ServiceToken. Optional: counts of tokens gone
// from the cache are dropped at the next scrape anyway.
func (c *Counters) Forget(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.counts, types.NamespacedName{Namespace: namespace, Name: name})
}

func (c *Counters) record(namespace, name string, inc func(*counts)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := types.NamespacedName{Namespace: namespace, Name: name}
	n := c.counts[key]
	if n == nil {
		if c.counts == nil {
			c.counts = map[types.NamespacedName]*counts{}
		}
		n = &counts{}
		c.counts[key] = n
	}
	inc(n)
	c.seq++
	n.seq = c.seq
}

// get returns the counts of a token (zero if none were recorded).
func (c *Counters) get(key types.NamespacedName) counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.counts[key]; n != nil {
		return *n
	}
	return counts{}
}

// current returns the sequence number to pass to prune, taken before listing.
func (c *Counters) current() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq
}

// prune drops the counts of tokens missing from a cache listing, so deleted
// tokens do not hold memory forever. Counts recorded after the listing began
// (seq > listedAt) are kept: their token may be newer than the listing.
func (c *Counters) prune(present map[types.NamespacedName]bool, listedAt uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, n := range c.counts {
		if !present[key] && n.seq <= listedAt {
			delete(c.counts, key)
		}
	}
}

// ServiceTokenCollector is a prometheus.Collector that lists ServiceTokens
// from the cache on every scrape. Its embedded Counters is what the
// controller records rotations and refreshes in.
type ServiceTokenCollector struct {
	Counters
	reader client.Reader
	labels labelCache
}

// NewServiceTokenCollector returns a collector over reader, normally the
// manager's cache (mgr.GetCache()), so scrapes never reach the API server.
func NewServiceTokenCollector(reader client.Reader) *ServiceTokenCollector {
	return &ServiceTokenCollector{reader: reader}
}

// Register registers a ServiceTokenCollector over reader on controller-runtime's
// metrics registry (served on the manager's metrics endpoint) and returns the
// Counters the controller records in. If one is registered already, its
// Counters are returned, so the counts stay in the collector being scraped.
func Register(reader client.Reader) (*Counters, error) {
	c := NewServiceTokenCollector(reader)
	if err := crmetrics.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*ServiceTokenCollector); ok {
				return &existing.Counters, nil
			}
		}
		return nil, err
	}
	return &c.Counters, nil
}

// Describe implements prometheus.Collector.
func (c *ServiceTokenCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{expirationDesc, renewalDesc, readyDesc, rotationsDesc, refreshesDesc, lostRotationsDesc, tokenIDChangesDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. If the cache cannot be listed it
// logs and emits nothing: an error metric would fail the whole scrape
// (controller-runtime serves with HTTPErrorOnError), hiding every other metric.
//
// A scrape holds every sample at once until it is written out, so what each
// costs is what the manager's memory peaks with: nine samples per
// ServiceToken. They are emitted as tokenSamples that share their label pairs
// (kept per ServiceToken between scrapes) instead of const metrics that
// allocate their own on every scrape: 7 MiB instead of 17 MiB held by a
// scrape of 5,100 ServiceTokens (docs/performance.md). The exposition is the
// same.
func (c *ServiceTokenCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	listedAt := c.current()
	var list v1alpha1.ServiceTokenList
	// Read-only: the cache's own objects, not a deep copy of every
	// ServiceToken on every scrape (thousands of objects, several MB each time).
	if err := c.reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		logf.Log.WithName("metrics").Error(err, "listing ServiceTokens for metrics")
		return
	}

	present := make(map[types.NamespacedName]bool, len(list.Items))
	for i := range list.Items {
		st := &list.Items[i]
		key := types.NamespacedName{Namespace: st.Namespace, Name: st.Name}
		present[key] = true
		ls := c.labels.of(key)

		samples := make([]tokenSample, 0, 9) // one allocation for the token's samples
		if t := st.Status.ExpiresAt; t != nil {
			samples = append(samples, tokenSample{desc: expirationDesc, labels: ls.base, value: float64(t.Unix())})
		}
		if t := st.Status.RenewalTime; t != nil {
			samples = append(samples, tokenSample{desc: renewalDesc, labels: ls.base, value: float64(t.Unix())})
		}

		ready := "unknown"
		if cond := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady); cond != nil {
			ready = strings.ToLower(string(cond.Status))
		}
		for j, v := range conditionValues {
			val := 0.0
			if v == ready {
				val = 1
			}
			samples = append(samples, tokenSample{desc: readyDesc, labels: ls.ready[j], value: val})
		}

		// Counters start at 0 for every token, so the first rotation shows
		// up in increase() instead of being the series' first sample.
		n := c.get(key)
		samples = append(samples,
			tokenSample{desc: rotationsDesc, labels: ls.base, value: n.rotations, counter: true},
			tokenSample{desc: refreshesDesc, labels: ls.base, value: n.refreshes, counter: true},
			tokenSample{desc: lostRotationsDesc, labels: ls.base, value: n.lostRotations, counter: true},
			tokenSample{desc: tokenIDChangesDesc, labels: ls.base, value: n.tokenIDChanges, counter: true})
		for j := range samples {
			ch <- &samples[j]
		}
	}
	c.prune(present, listedAt)
	c.labels.prune(present)
}

// tokenSample is one sample of a ServiceToken: a prometheus.Metric whose
// label pairs are shared with the token's other samples and kept between
// scrapes (they are only ever read).
type tokenSample struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	value   float64
	counter bool
}

func (s *tokenSample) Desc() *prometheus.Desc { return s.desc }

func (s *tokenSample) Write(m *dto.Metric) error {
	m.Label = s.labels
	if s.counter {
		m.Counter = &dto.Counter{Value: ptr(s.value)}
	} else {
		m.Gauge = &dto.Gauge{Value: ptr(s.value)}
	}
	return nil
}

// tokenLabels are a ServiceToken's label pairs, sorted by label name as
// Prometheus expects: name and namespace, and condition, name and namespace
// for each value of conditionValues.
type tokenLabels struct {
	base  []*dto.LabelPair
	ready [3][]*dto.LabelPair
}

// conditionPairs are the condition label pairs, in conditionValues order.
var conditionPairs = func() (out [3]*dto.LabelPair) {
	for i, v := range conditionValues {
		out[i] = &dto.LabelPair{Name: ptr("condition"), Value: ptr(v)}
	}
	return out
}()

// labelCache keeps each ServiceToken's label pairs between scrapes. It is
// safe for concurrent scrapes.
type labelCache struct {
	mu     sync.Mutex
	tokens map[types.NamespacedName]*tokenLabels
}

func (c *labelCache) of(key types.NamespacedName) *tokenLabels {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.tokens[key]; l != nil {
		return l
	}
	if c.tokens == nil {
		c.tokens = map[types.NamespacedName]*tokenLabels{}
	}
	name := &dto.LabelPair{Name: ptr("name"), Value: ptr(key.Name)}
	ns := &dto.LabelPair{Name: ptr("namespace"), Value: ptr(key.Namespace)}
	l := &tokenLabels{base: []*dto.LabelPair{name, ns}}
	for i := range conditionPairs {
		l.ready[i] = []*dto.LabelPair{conditionPairs[i], name, ns}
	}
	c.tokens[key] = l
	return l
}

// prune drops the label pairs of ServiceTokens gone from the cache.
func (c *labelCache) prune(present map[types.NamespacedName]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range c.tokens {
		if !present[key] {
			delete(c.tokens, key)
		}
	}
}

func ptr[T any](v T) *T { return &v }
