// Package v1alpha1 contains the API of servicetoken-operator: ServiceToken, and
// the two kinds that say where tokens live and how to authenticate,
// CloudflareAccount (namespaced) and ClusterCloudflareAccount (cluster-scoped).
//
// Defaults are applied in code and documented on each field; they are never
// written back into spec, so GitOps tools see no drift.
//
// +kubebuilder:object:generate=true
// +groupName=access.servicetoken.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "access.servicetoken.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this API with a scheme. It is
	// apimachinery's, as in k8s.io/api: controller-runtime's scheme.Builder is
	// deprecated, and would make this package import controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes adds every kind of this API, and the meta/v1 types that
// list and watch options need, to scheme.
func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&ServiceToken{}, &ServiceTokenList{},
		&CloudflareAccount{}, &CloudflareAccountList{},
		&ClusterCloudflareAccount{}, &ClusterCloudflareAccountList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
