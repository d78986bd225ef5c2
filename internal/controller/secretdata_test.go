package controller

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

var testOwner = metav1.OwnerReference{APIVersion: "access.servicetoken.dev/v1alpha1", Kind: "ServiceToken", Name: "st", UID: "uid-1"}

func testContent() secretContent {
	return secretContent{
		Namespace: "ns", Name: "app", Owner: testOwner,
		Cred: storedCredential{ClientID: "id.access", ClientSecret: "s3cret", TokenID: "tok", OperationID: "op1",
			IssuedAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Keys: dataKeys{ClientID: "client_id", ClientSecret: "client_secret"}},
		ExpiresAt: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		Labels:    map[string]string{"app": "x"}, Annotations: map[string]string{"reloader.stakater.com/match": "true"},
	}
}

// written is the Secret as the API server holds it after renderSecret was applied.
func written(c secretContent) *corev1.Secret {
	ac := renderSecret(c)
	ref := c.Owner
	ref.Controller = ptr(true)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: *ac.Name, Namespace: *ac.Namespace, Labels: ac.Labels, Annotations: ac.Annotations,
			OwnerReferences: []metav1.OwnerReference{ref}},
		Data: ac.Data,
	}
}

func TestRenderAndReadBack(t *testing.T) {
	g := NewWithT(t)
	c := testContent()
	s := written(c)
	got, ok := readCredential(s, dataKeys{ClientID: "other", ClientSecret: "keys"})
	g.Expect(ok).To(BeTrue())
	g.Expect(got).To(Equal(c.Cred), "read back under the recorded keys, whatever the fallback")
	g.Expect(s.Labels).To(HaveKeyWithValue(v1alpha1.LabelManaged, "true"))
	g.Expect(s.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationOperationID, "op1"))
	g.Expect(s.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationExpiresAt, "2027-01-01T00:00:00Z"))
	g.Expect(s.Annotations).NotTo(ContainElement(ContainSubstring("s3cret")), "only a hash of the secret is annotated")
	g.Expect(fmt.Sprintf("%v %+v %#v", got, got, got)).NotTo(ContainSubstring("s3cret"), "printing never shows the secret")
}

func TestReadCredential(t *testing.T) {
	fallback := dataKeys{ClientID: "client_id", ClientSecret: "client_secret"}
	for name, tc := range map[string]struct {
		mutate func(*corev1.Secret)
		ok     bool
	}{
		"a Secret as written is read back":              {func(*corev1.Secret) {}, true},
		"others' keys, labels and annotations are fine": {func(s *corev1.Secret) { s.Data["extra"] = []byte("x"); s.Labels["b"] = "1"; s.Annotations["c"] = "2" }, true},
		"an edited secret value is not ours any more":   {func(s *corev1.Secret) { s.Data["client_secret"] = []byte("edited") }, false},
		"a removed secret value is missing":             {func(s *corev1.Secret) { delete(s.Data, "client_secret") }, false},
		"a removed client ID is missing":                {func(s *corev1.Secret) { delete(s.Data, "client_id") }, false},
		"no token ID: not written by the operator":      {func(s *corev1.Secret) { delete(s.Annotations, v1alpha1.AnnotationTokenID) }, false},
		"no recorded keys: the spec's keys are used":    {func(s *corev1.Secret) { delete(s.Annotations, annotationDataKeys) }, true},
		"garbled recorded keys: the spec's keys":        {func(s *corev1.Secret) { s.Annotations[annotationDataKeys] = "client_id" }, true},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			s := written(testContent())
			tc.mutate(s)
			_, ok := readCredential(s, fallback)
			g.Expect(ok).To(Equal(tc.ok))
		})
	}
	_, ok := readCredential(nil, fallback)
	NewWithT(t).Expect(ok).To(BeFalse(), "no Secret, no credential")
}

func TestUpToDateComparesOnlyTheOperatorsPart(t *testing.T) {
	for name, tc := range map[string]struct {
		change   func(*secretContent)   // what the spec or token now asks for
		others   func(s *corev1.Secret) // what others did to the Secret
		upToDate bool
	}{
		"unchanged":                             {nil, nil, true},
		"another tool's label and annotation":   {nil, func(s *corev1.Secret) { s.Labels["backup"] = "yes"; s.Annotations["policy"] = "ok" }, true},
		"another tool's data key and finalizer": {nil, func(s *corev1.Secret) { s.Data["extra"] = []byte("x"); s.Finalizers = []string{"keep"} }, true},
		"a spec label changed":                  {func(c *secretContent) { c.Labels = map[string]string{"app": "y"} }, nil, false},
		"a spec label removed":                  {func(c *secretContent) { c.Labels = nil }, nil, false},
		"a spec annotation added":               {func(c *secretContent) { c.Annotations["new"] = "1" }, nil, false},
		"keys renamed":                          {func(c *secretContent) { c.Cred.Keys = dataKeys{ClientID: "ID", ClientSecret: "SECRET"} }, nil, false},
		"expiry moved":                          {func(c *secretContent) { c.ExpiresAt = c.ExpiresAt.Add(time.Hour) }, nil, false},
		"our managed label removed by someone":  {nil, func(s *corev1.Secret) { delete(s.Labels, v1alpha1.LabelManaged) }, false},
		"our annotation changed by someone":     {nil, func(s *corev1.Secret) { s.Annotations[v1alpha1.AnnotationTokenID] = "x" }, false},
		"controlled by another owner":           {nil, func(s *corev1.Secret) { s.OwnerReferences[0].UID = "other" }, false},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			s := written(testContent())
			if tc.others != nil {
				tc.others(s)
			}
			c := testContent()
			if tc.change != nil {
				tc.change(&c)
			}
			g.Expect(upToDate(s, c)).To(Equal(tc.upToDate))
		})
	}
}

func TestWithKnownFillsWhatCreateAndRotateResponsesLeaveOut(t *testing.T) {
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	called := created.Add(-2 * time.Second)
	eff := v1alpha1.Effective{TokenName: "ns/st", Duration: "720h", DurationValue: 720 * time.Hour, Enabled: true}
	known := &cf.Token{ID: "tok", Name: "ns/st", Duration: "720h", Enabled: false, CreatedAt: created, ExpiresAt: created.Add(720 * time.Hour)}
	// What a create or rotate answer leaves out, as the client marks it.
	const noExpiry = cf.FieldExpiresAt | cf.FieldUpdatedAt
	for name, tc := range map[string]struct {
		got   cf.Token
		known *cf.Token
		eff   v1alpha1.Effective
		want  cf.Token
	}{
		"a rotate response without expires_at keeps the token's last known state": {
			got:   cf.Token{ID: "tok", ClientID: "c", Enabled: true, Missing: noExpiry | cf.FieldName | cf.FieldDuration | cf.FieldEnabled | cf.FieldCreatedAt},
			known: known, eff: eff,
			want: cf.Token{ID: "tok", ClientID: "c", Name: "ns/st", Duration: "720h", Enabled: false, CreatedAt: created, ExpiresAt: created.Add(720 * time.Hour)},
		},
		"a response's own fields win": {
			got: cf.Token{ID: "tok", Name: "ns/st", Duration: "720h", Enabled: true, ExpiresAt: created.Add(time.Hour), Missing: cf.FieldCreatedAt | cf.FieldUpdatedAt}, known: known, eff: eff,
			want: cf.Token{ID: "tok", Name: "ns/st", Duration: "720h", Enabled: true, CreatedAt: created, ExpiresAt: created.Add(time.Hour)},
		},
		"a create response without expires_at expires created_at + duration": {
			got: cf.Token{ID: "new", Name: "ns/st", Duration: "720h", Enabled: true, CreatedAt: created, Missing: noExpiry}, known: known, eff: eff,
			want: cf.Token{ID: "new", Name: "ns/st", Duration: "720h", Enabled: true, CreatedAt: created, ExpiresAt: created.Add(720 * time.Hour), Missing: cf.FieldUpdatedAt},
		},
		"a forever token has no expiry": {
			got:  cf.Token{ID: "new", Name: "x", Duration: "forever", Enabled: true, CreatedAt: created, Missing: cf.FieldUpdatedAt},
			eff:  v1alpha1.Effective{TokenName: "x", Duration: "forever", Forever: true, Enabled: true},
			want: cf.Token{ID: "new", Name: "x", Duration: "forever", Enabled: true, CreatedAt: created, Missing: cf.FieldUpdatedAt},
		},
		"an answer with nothing but an id is what was asked for, expiring from the call": {
			got: cf.Token{ID: "new", Enabled: true, Missing: noExpiry | cf.FieldName | cf.FieldDuration | cf.FieldEnabled | cf.FieldCreatedAt}, eff: eff,
			want: cf.Token{ID: "new", Name: "ns/st", Duration: "720h", Enabled: true, ExpiresAt: called.Add(720 * time.Hour), Missing: cf.FieldCreatedAt | cf.FieldUpdatedAt},
		},
		"a disabled token asked for stays disabled when the answer does not say": {
			got:  cf.Token{ID: "new", Name: "ns/st", Duration: "720h", Enabled: true, CreatedAt: created, Missing: noExpiry | cf.FieldEnabled},
			eff:  v1alpha1.Effective{TokenName: "ns/st", Duration: "720h", DurationValue: 720 * time.Hour, Enabled: false},
			want: cf.Token{ID: "new", Name: "ns/st", Duration: "720h", Enabled: false, CreatedAt: created, ExpiresAt: created.Add(720 * time.Hour), Missing: cf.FieldUpdatedAt},
		},
	} {
		t.Run(name, func(t *testing.T) {
			NewWithT(t).Expect(withKnown(tc.got, tc.known, tc.eff, called)).To(Equal(tc.want))
		})
	}
}
