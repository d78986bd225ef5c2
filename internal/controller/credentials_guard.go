package controller

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// The credentials outlive the tokens that need them: one promise, kept in
// this file. Deleting a ServiceToken deletes its Cloudflare token with the
// account's credentials; when the credentials Secret is deleted first (a
// namespace deletion deletes everything at once, a GitOps tool prunes the
// Secret) the deletion would have nothing to call Cloudflare with, and the
// namespace would stick in Terminating.
//
// The account controller therefore holds a finalizer on the credentials
// Secret (v1alpha1.CredentialsFinalizer) while ServiceTokens of the account
// hold tokens, and removes it when none do. A finalizer, not a copy of the
// credentials kept by the controller: a copy in memory is lost when the
// manager restarts or another replica becomes leader, and a copy elsewhere
// in the cluster would be one more place a credential can leak from. The
// finalizer is in etcd: every manager, now or after a restart, finds the
// Secret readable (deleting, not gone) until the last token is deleted.
//
// Which Secret carries the finalizer on an account's behalf is recorded in
// its status.protectedSecret before the finalizer is added, so moving
// spec.credentialsRef to another Secret, or deleting the account, releases
// the old one even across a restart. Several accounts may read one Secret:
// it is released only when no account reading it has a ServiceToken holding
// a token.

const (
	// credentialsSecretIndex indexes both account kinds by the Secret they
	// read, "<namespace>/<name>".
	credentialsSecretIndex = "spec.credentialsRef.key"
	// tokenHoldersIndex indexes the ServiceTokens that need their account's
	// credentials to be deleted, by account key (accountIndex's value).
	tokenHoldersIndex = "spec.accountRef.key.holdsToken"
)

// needsCredentials reports whether deleting st will call Cloudflare: it
// accounts for a token and does not orphan it.
func needsCredentials(st *v1alpha1.ServiceToken) bool {
	return holdsToken(st) && st.Spec.DeletionPolicy != v1alpha1.DeletionOrphan
}

// indexCredentialsUse registers the indexes guardCredentials reads.
func indexCredentialsUse(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.CloudflareAccount{}, credentialsSecretIndex, func(o client.Object) []string {
		return []string{o.GetNamespace() + "/" + o.(*v1alpha1.CloudflareAccount).Spec.CredentialsRef.Name}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &v1alpha1.ClusterCloudflareAccount{}, credentialsSecretIndex, func(o client.Object) []string {
		ref := o.(*v1alpha1.ClusterCloudflareAccount).Spec.CredentialsRef
		return []string{ref.Namespace + "/" + ref.Name}
	}); err != nil {
		return err
	}
	return idx.IndexField(ctx, &v1alpha1.ServiceToken{}, tokenHoldersIndex, func(o client.Object) []string {
		st := o.(*v1alpha1.ServiceToken)
		if !needsCredentials(st) {
			return nil
		}
		return []string{accountKeyOf(st)}
	})
}

// accountKeyOf is the key of the account st refers to.
func accountKeyOf(st *v1alpha1.ServiceToken) string {
	if kind := accountKindOf(st); kind == v1alpha1.KindClusterCloudflareAcc {
		return accountKey(kind, "", st.Spec.AccountRef.Name)
	}
	return accountKey(v1alpha1.KindCloudflareAccount, st.Namespace, st.Spec.AccountRef.Name)
}

// credentialsUseChanged lets through the ServiceToken events that may change
// whether its account's Secret must be kept: a token appears (or an
// issuance starts), the last one goes, the object is deleted.
var credentialsUseChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return needsCredentials(e.Object.(*v1alpha1.ServiceToken)) },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return needsCredentials(e.ObjectOld.(*v1alpha1.ServiceToken)) != needsCredentials(e.ObjectNew.(*v1alpha1.ServiceToken))
	},
	DeleteFunc:  func(e event.DeleteEvent) bool { return needsCredentials(e.Object.(*v1alpha1.ServiceToken)) },
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// accountOfToken maps a ServiceToken to its account, if it is of this
// reconciler's kind.
func (r *AccountReconciler) accountOfToken(_ context.Context, o client.Object) []reconcile.Request {
	st := o.(*v1alpha1.ServiceToken)
	if accountKindOf(st) != r.Kind {
		return nil
	}
	nn := types.NamespacedName{Namespace: st.Namespace, Name: st.Spec.AccountRef.Name}
	if r.Kind == v1alpha1.KindClusterCloudflareAcc {
		nn.Namespace = ""
	}
	return []reconcile.Request{{NamespacedName: nn}}
}

// guardCredentials puts the finalizer on the account's credentials Secret
// while its ServiceTokens hold tokens, and takes it off (from the Secret the
// status names, which may be an older one) when they do not. The order keeps
// status.protectedSecret naming every Secret that may carry the finalizer on
// this account's behalf: an old Secret is released before the status moves
// on, and the status names a new one before it is protected.
func (r *AccountReconciler) guardCredentials(ctx context.Context, acc *account) error {
	r.Accounts.guard.Lock() // one decision at a time per process: accounts may share a Secret
	defer r.Accounts.guard.Unlock()
	recorded := accountStatus(acc.Object).ProtectedSecret
	want := ""
	used, err := r.tokensNeedCredentials(ctx, acc.Key)
	if err != nil {
		return err
	}
	if used {
		want = acc.SecretRef.String()
	}
	if recorded != "" && recorded != want {
		if err := r.releaseSecret(ctx, recorded); err != nil {
			return err
		}
	}
	if recorded != want {
		if err := r.recordProtected(ctx, acc.Object, want); err != nil {
			return err
		}
	}
	if want == "" {
		return nil
	}
	return r.protectSecret(ctx, acc.SecretRef)
}

// tokensNeedCredentials reports whether a ServiceToken of the account holds
// a token that its deletion must delete.
func (r *AccountReconciler) tokensNeedCredentials(ctx context.Context, key string) (bool, error) {
	list := &v1alpha1.ServiceTokenList{}
	if err := r.List(ctx, list, client.MatchingFields{tokenHoldersIndex: key}, client.Limit(1)); err != nil {
		return false, fmt.Errorf("listing the ServiceTokens of %s: %w", key, err)
	}
	return len(list.Items) > 0, nil
}

// secretNeeded reports whether any account reading the Secret (either kind)
// has ServiceTokens that need it.
func (r *AccountReconciler) secretNeeded(ctx context.Context, secret string) (bool, error) {
	namespaced := &v1alpha1.CloudflareAccountList{}
	if err := r.List(ctx, namespaced, client.MatchingFields{credentialsSecretIndex: secret}); err != nil {
		return false, fmt.Errorf("listing the accounts reading Secret %s: %w", secret, err)
	}
	keys := make([]string, 0, len(namespaced.Items))
	for _, a := range namespaced.Items {
		keys = append(keys, accountKey(v1alpha1.KindCloudflareAccount, a.Namespace, a.Name))
	}
	cluster := &v1alpha1.ClusterCloudflareAccountList{}
	if err := r.List(ctx, cluster, client.MatchingFields{credentialsSecretIndex: secret}); err != nil {
		return false, fmt.Errorf("listing the accounts reading Secret %s: %w", secret, err)
	}
	for _, a := range cluster.Items {
		keys = append(keys, accountKey(v1alpha1.KindClusterCloudflareAcc, "", a.Name))
	}
	for _, key := range keys {
		if used, err := r.tokensNeedCredentials(ctx, key); err != nil || used {
			return used, err
		}
	}
	return false, nil
}

// protectSecret adds the finalizer to the Secret, unless it is gone or
// already being deleted (no finalizer may be added then; one already there
// keeps it).
func (r *AccountReconciler) protectSecret(ctx context.Context, ref types.NamespacedName) error {
	secret := &corev1.Secret{}
	if err := r.Accounts.APIReader.Get(ctx, ref, secret); err != nil {
		return client.IgnoreNotFound(err) // the account's Ready condition says it is missing
	}
	if controllerutil.ContainsFinalizer(secret, v1alpha1.CredentialsFinalizer) || !secret.DeletionTimestamp.IsZero() {
		return nil
	}
	if err := patchFinalizers(ctx, r.Client, secret, func() { controllerutil.AddFinalizer(secret, v1alpha1.CredentialsFinalizer) }); err != nil {
		return fmt.Errorf("adding finalizer %s to credentials Secret %s: %w", v1alpha1.CredentialsFinalizer, ref, err)
	}
	return nil
}

// releaseSecret removes the finalizer from the Secret ("<namespace>/<name>")
// unless an account reading it still needs it.
func (r *AccountReconciler) releaseSecret(ctx context.Context, name string) error {
	if needed, err := r.secretNeeded(ctx, name); err != nil || needed {
		return err
	}
	ns, n, _ := strings.Cut(name, "/")
	secret := &corev1.Secret{}
	if err := r.Accounts.APIReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: n}, secret); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !controllerutil.ContainsFinalizer(secret, v1alpha1.CredentialsFinalizer) {
		return nil
	}
	err := patchFinalizers(ctx, r.Client, secret, func() { controllerutil.RemoveFinalizer(secret, v1alpha1.CredentialsFinalizer) })
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer %s from credentials Secret %s: %w", v1alpha1.CredentialsFinalizer, name, err)
	}
	return nil
}

// recordProtected writes status.protectedSecret.
func (r *AccountReconciler) recordProtected(ctx context.Context, obj client.Object, secret string) error {
	base := obj.DeepCopyObject().(client.Object)
	accountStatus(obj).ProtectedSecret = secret
	if err := r.Status().Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		accountStatus(obj).ProtectedSecret = accountStatus(base).ProtectedSecret
		return fmt.Errorf("recording status.protectedSecret: %w", err)
	}
	return nil
}
