package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// installIDPattern is what --install-id accepts: a DNS subdomain-like name.
var installIDPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)

// AccountFinalizerFor is the finalizer an install puts on the accounts its
// ServiceTokens use. Each install of the operator in a cluster has its own
// (--install-id, the release namespace in the Helm chart): an install sees
// only the ServiceTokens of its namespaces, so it may only release its own
// hold on a shared ClusterCloudflareAccount, never another install's.
func AccountFinalizerFor(installID string) (string, error) {
	if installID == "" {
		return v1alpha1.AccountFinalizer, nil
	}
	if !installIDPattern.MatchString(installID) {
		return "", fmt.Errorf("install ID %q: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", installID)
	}
	// The part after the "/" of a finalizer is at most 63 characters.
	const maxName = 63
	name := "in-use." + installID
	if len(name) > maxName {
		sum := sha256.Sum256([]byte(installID))
		name = name[:maxName-13] + "-" + hex.EncodeToString(sum[:])[:12]
	}
	return "access.servicetoken.dev/" + name, nil
}

// setAccountFinalizer adds or removes finalizer with a merge patch under an
// optimistic lock: a finalizer list is replaced whole by a merge patch, so
// without the lock a patch made from a stale read would drop a finalizer
// another party (another install, another controller) added meanwhile. A
// conflict is returned, and the reconcile retries on a fresh read.
func setAccountFinalizer(ctx context.Context, c client.Writer, obj client.Object, finalizer string, present bool) error {
	has := controllerutil.ContainsFinalizer
	if present == has(obj, finalizer) && (present || !has(obj, v1alpha1.AccountFinalizer)) {
		return nil
	}
	return patchFinalizers(ctx, c, obj, func() {
		if present {
			controllerutil.AddFinalizer(obj, finalizer)
			return
		}
		controllerutil.RemoveFinalizer(obj, finalizer)
		// The finalizer of versions without install IDs is released with
		// this install's own (else an upgraded install would leave it behind).
		controllerutil.RemoveFinalizer(obj, v1alpha1.AccountFinalizer)
	})
}
