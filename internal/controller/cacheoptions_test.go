package controller

import (
	"testing"

	. "github.com/onsi/gomega"
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
