package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// A fix or rotation of an account's API token is picked up at once: the
// account controllers watch the credentials Secrets. The manager's cache
// holds only the Secrets the operator manages (CacheOptions), and a label
// selector cannot also take in the credentials Secrets, so they get a cache
// of their own: the metadata of Secrets that opted in (LabelCredentials),
// nothing else. The credentials themselves are still read from the API
// server when used, so no API token sits in an informer. A Secret without
// the label is outside the cache: labelling it arrives as its creation.

// credentialsCache is a cache started with the manager's caches, before the
// controllers (the manager treats a runnable with GetCache so).
type credentialsCache struct{ cache.Cache }

func (c credentialsCache) GetCache() cache.Cache { return c.Cache }

// newCredentialsCache adds to mgr the cache of opted-in Secrets' metadata,
// over namespaces (nil: all), the manager cache's namespaces.
func newCredentialsCache(mgr ctrl.Manager, namespaces map[string]cache.Config) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
		DefaultNamespaces:    namespaces,
		DefaultLabelSelector: labels.SelectorFromSet(labels.Set{v1alpha1.LabelCredentials: "true"}),
		DefaultTransform:     trimForCache,
	})
	if err != nil {
		return nil, err
	}
	return c, mgr.Add(credentialsCache{c})
}

// credentialsSecretSource is the watch on the credentials Secrets, each
// mapped to the accounts of this reconciler's kind that read it.
func (r *AccountReconciler) credentialsSecretSource(c cache.Cache) source.Source {
	secret := &metav1.PartialObjectMetadata{}
	secret.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return source.Kind(c, secret, handler.TypedEnqueueRequestsFromMapFunc(r.accountsOfSecret))
}

// accountsOfSecret lists, through the credentialsSecretIndex, the accounts
// of this reconciler's kind that read the Secret.
func (r *AccountReconciler) accountsOfSecret(ctx context.Context, s *metav1.PartialObjectMetadata) []reconcile.Request {
	key := client.MatchingFields{credentialsSecretIndex: s.Namespace + "/" + s.Name}
	var list client.ObjectList = &v1alpha1.CloudflareAccountList{}
	if r.Kind == v1alpha1.KindClusterCloudflareAcc {
		list = &v1alpha1.ClusterCloudflareAccountList{}
	}
	if err := r.List(ctx, list, key); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing the accounts that read a credentials Secret", "secret", s.Namespace+"/"+s.Name)
		return nil
	}
	var reqs []reconcile.Request
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o.(client.Object))})
		return nil
	})
	return reqs
}
