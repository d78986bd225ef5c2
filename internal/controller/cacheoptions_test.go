package controller

import (
	"testing"
	"unsafe"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

func TestTrimForCacheDropsWhatIsNeverRead(t *testing.T) {
	g := NewWithT(t)
	st := &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{
		Name: "a", Namespace: "ns",
		Annotations: map[string]string{
			lastAppliedAnnotation:                `{"apiVersion":"access.servicetoken.dev/v1alpha1","kind":"ServiceToken"}`,
			v1alpha1.AnnotationRotateRequestedAt: "2026-01-01T00:00:00Z",
		},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
	}}
	out, err := trimForCache(st)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(BeIdenticalTo(st))
	g.Expect(st.ManagedFields).To(BeNil())
	g.Expect(st.Annotations).To(Equal(map[string]string{v1alpha1.AnnotationRotateRequestedAt: "2026-01-01T00:00:00Z"}),
		"annotations the operator reads stay")

	tomb := toolscache.DeletedFinalStateUnknown{Key: "ns/a", Obj: st}
	out, err = trimForCache(tomb)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(tomb))

	g.Expect(CacheOptions(nil).DefaultTransform).NotTo(BeNil())
}

func TestTrimForCacheSharesRepeatedStrings(t *testing.T) {
	g := NewWithT(t)
	decode := func() *corev1.Secret { // fresh strings, as a decoder makes them
		s := func(v string) string { return string([]byte(v)) }
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name: s("token-a"), Namespace: s("ns"),
			Labels: map[string]string{s(v1alpha1.LabelManaged): s("true")},
			Annotations: map[string]string{s(v1alpha1.AnnotationTokenID): s("id-1"),
				s(annotationDataKeys): s("client_id,client_secret"), s(annotationTemplate): s("e3b0c442")},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: s("access.servicetoken.dev/v1alpha1"), Kind: s("ServiceToken"), Name: s("a")}},
		}, Type: corev1.SecretType(s("Opaque")), Data: map[string][]byte{s("client_id"): []byte("x")}}
	}
	a, b := decode(), decode()
	_, _ = trimForCache(a)
	_, _ = trimForCache(b)
	g.Expect(a).To(Equal(decode()), "values are unchanged")
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	keyOf := func(m map[string]string, want string) string { // the map's own copy of the key
		for k := range m {
			if k == want {
				return k
			}
		}
		return ""
	}
	g.Expect(same(a.Namespace, b.Namespace)).To(BeTrue())
	g.Expect(same(keyOf(a.Labels, v1alpha1.LabelManaged), keyOf(b.Labels, v1alpha1.LabelManaged))).To(BeTrue())
	g.Expect(same(a.Labels[v1alpha1.LabelManaged], b.Labels[v1alpha1.LabelManaged])).To(BeTrue())
	for k := range a.Annotations {
		g.Expect(same(k, keyOf(b.Annotations, k))).To(BeTrue(), "annotation key %s", k)
	}
	g.Expect(same(a.Annotations[annotationDataKeys], b.Annotations[annotationDataKeys])).To(BeTrue(), "shared bookkeeping values")
	g.Expect(same(a.Annotations[annotationTemplate], b.Annotations[annotationTemplate])).To(BeTrue())
	g.Expect(same(a.Annotations[v1alpha1.AnnotationTokenID], b.Annotations[v1alpha1.AnnotationTokenID])).To(BeFalse(), "the token ID is per object")
	g.Expect(same(a.OwnerReferences[0].Kind, b.OwnerReferences[0].Kind)).To(BeTrue())
	g.Expect(same(string(a.Type), string(b.Type))).To(BeTrue())
	g.Expect(same(a.Name, b.Name)).To(BeFalse(), "per-object values are not interned")

	st := &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns"}}
	st.Status.Conditions = []metav1.Condition{{Type: string([]byte("Ready")), Status: metav1.ConditionTrue, Reason: string([]byte("Ready")), Message: "m"}}
	st.Status.SecretName = string([]byte("t"))
	_, _ = trimForCache(st)
	g.Expect(st.Status.Conditions[0].Type).To(Equal("Ready"))
	g.Expect(same(st.Status.Conditions[0].Type, st.Status.Conditions[0].Reason)).To(BeTrue())
	g.Expect(same(st.Status.SecretName, st.Name)).To(BeTrue())
}
