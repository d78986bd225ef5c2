// Package controller holds the ServiceToken and account controllers.
package controller

// The permissions the manager needs, in one place: controller-gen turns these
// markers into config/rbac/role.yaml (and the Helm chart copies the rules).
// Keep them the least the controllers use: test/security/rbac_test.go fails on
// a wildcard or a verb it does not know a use for (each listed there with why).
// Writes are merge patches (finalizers, status), so neither update on the
// objects nor get/update on their status subresources is needed; update on
// servicetokens/finalizers lets the Secret's ownerReference block deletion.

// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=servicetokens,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=servicetokens/status,verbs=patch
// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=servicetokens/finalizers,verbs=update
// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=cloudflareaccounts;clustercloudflareaccounts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=cloudflareaccounts/status;clustercloudflareaccounts/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
