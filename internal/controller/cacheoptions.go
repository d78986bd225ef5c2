package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// lastAppliedAnnotation is where client-side `kubectl apply` (and tools built
// on it, such as Argo CD by default) keeps a full copy of the object.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// CacheOptions is the manager's informer cache: namespaces nil watches all.
// Memory must not grow with the cluster's unrelated objects, nor carry what
// the operator never reads, so:
//   - only Secrets labelled as managed by the operator are cached (a cluster
//     may hold tens of thousands of other Secrets);
//   - managedFields and the last-applied-configuration annotation are dropped
//     from every cached object: nothing here reads them, and together they
//     are often most of an object's size. (The operator writes ServiceTokens
//     with patches computed against the cached object, which leave both
//     untouched on the server.)
func CacheOptions(namespaces map[string]cache.Config) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{v1alpha1.LabelManaged: "true"})
	return cache.Options{
		DefaultNamespaces: namespaces,
		ByObject:          map[client.Object]cache.ByObject{&corev1.Secret{}: {Label: managed}},
		DefaultTransform:  trimForCache,
	}
}

// trimForCache drops the parts of an object the operator never reads.
func trimForCache(in any) (any, error) {
	obj, err := meta.Accessor(in)
	if err != nil {
		return in, nil // e.g. a DeletedFinalStateUnknown tombstone: leave it
	}
	if obj.GetManagedFields() != nil { // nil check: kubernetes/kubernetes#124337
		obj.SetManagedFields(nil)
	}
	if a := obj.GetAnnotations(); a != nil {
		if _, ok := a[lastAppliedAnnotation]; ok {
			delete(a, lastAppliedAnnotation) // a freshly decoded object: nobody else holds the map
		}
	}
	return in, nil
}
