// Package controller holds the ServiceToken and account controllers.
package controller

// The permissions the manager needs, in one place: controller-gen turns these
// markers into config/rbac/role.yaml (and the Helm chart copies the rules).
// Keep them the least the controllers use.

// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=servicetokens,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=servicetokens/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=servicetokens/finalizers,verbs=update
// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=cloudflareaccounts;clustercloudflareaccounts,verbs=get;list;watch
// +kubebuilder:rbac:groups=access.servicetoken.dev,resources=cloudflareaccounts/status;clustercloudflareaccounts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
