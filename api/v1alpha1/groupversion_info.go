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
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "access.servicetoken.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this API with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
