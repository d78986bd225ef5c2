package controller

import (
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
//   - strings that repeat from object to object (namespaces, label and
//     annotation keys, owner kinds, condition types and reasons, Secret data
//     keys) share one copy instead of one per decoded object. Values stay
//     equal, so nothing reading the cache can tell.
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
	// A freshly decoded object: nobody else holds the annotations map.
	delete(obj.GetAnnotations(), lastAppliedAnnotation)
	internShared(in, obj)
	return in, nil
}

// intern returns the canonical copy of s.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

// internShared makes the low-cardinality strings of a freshly decoded object
// (nobody else holds it yet) share one copy across objects. Values that are
// unique per object (names, UIDs, secrets, messages) are left alone: interning
// them would only add an entry to the intern table.
func internShared(in any, obj metav1.Object) {
	obj.SetNamespace(intern(obj.GetNamespace()))
	internKeys(obj.GetLabels(), true)
	internKeys(obj.GetAnnotations(), false)
	if f := obj.GetFinalizers(); f != nil {
		for i := range f {
			f[i] = intern(f[i])
		}
	}
	if refs := obj.GetOwnerReferences(); refs != nil {
		for i := range refs {
			refs[i].APIVersion, refs[i].Kind = intern(refs[i].APIVersion), intern(refs[i].Kind)
		}
	}
	switch o := in.(type) {
	case *corev1.Secret:
		o.Type = corev1.SecretType(intern(string(o.Type)))
		internKeys(o.Data, false)
		// Our bookkeeping values that most Secrets share: the data keys
		// written, and the digest of spec.secret's (usually empty) template.
		for _, k := range []string{annotationDataKeys, annotationTemplate} {
			if v, ok := o.Annotations[k]; ok {
				o.Annotations[k] = intern(v)
			}
		}
	case *v1alpha1.ServiceToken:
		o.Spec.AccountRef.Kind, o.Spec.AccountRef.Name = intern(o.Spec.AccountRef.Kind), intern(o.Spec.AccountRef.Name)
		o.Spec.Duration = intern(o.Spec.Duration)
		o.Status.AccountID = intern(o.Status.AccountID) // one of a few accounts
		for i := range o.Status.Conditions {
			c := &o.Status.Conditions[i]
			c.Type, c.Reason = intern(c.Type), intern(c.Reason)
			c.Status = metav1.ConditionStatus(intern(string(c.Status)))
		}
		if o.Status.SecretName == o.Name {
			o.Status.SecretName = o.Name // usually: one copy instead of two
		}
	}
}

// internKeys interns a map's keys (and, with values, its string values) in
// place.
func internKeys[V any](m map[string]V, values bool) {
	if len(m) == 0 {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for _, k := range keys {
		v := m[k]
		if sv, ok := any(v).(string); ok && values {
			v = any(intern(sv)).(V)
		}
		delete(m, k)
		m[intern(k)] = v
	}
}
