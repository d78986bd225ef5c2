package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// reconcileDelete removes the Cloudflare token (deletionPolicy Delete) and
// then the finalizer; an object that never got a token is released at once.
// The Secret is owned by the ServiceToken and goes with it. When the
// account is gone the deletion cannot succeed (its credentials Secret is
// kept for it: guardCredentials); after Options.DeleteAttempts failures the status and an event say
// how to release the object with the force-delete annotation.
func (r *ServiceTokenReconciler) reconcileDelete(ctx context.Context, s *scope) error {
	st := s.st
	if !controllerutil.ContainsFinalizer(st, v1alpha1.Finalizer) {
		return nil
	}
	if st.Annotations[v1alpha1.AnnotationForceDelete] == "true" {
		r.event(s, corev1.EventTypeWarning, "ForceDeleted", "Delete",
			"released by the %s annotation; token %s was NOT deleted in Cloudflare", v1alpha1.AnnotationForceDelete, st.Status.TokenID)
		return r.release(ctx, s)
	}
	if !holdsToken(st) { // nothing to delete: no account, no credentials, no Cloudflare needed
		return r.release(ctx, s)
	}
	eff, err := st.EffectiveIn(r.Options.ClusterName)
	if err == nil && eff.DeletionPolicy == v1alpha1.DeletionOrphan {
		s.eff = eff
		if err := r.keepOrphaned(ctx, s); err != nil {
			return err
		}
		r.event(s, corev1.EventTypeNormal, "Orphaned", "Delete", "deletionPolicy Orphan: token %s is left in Cloudflare, and Secret %s is kept",
			st.Status.TokenID, st.Status.SecretName)
		return r.release(ctx, s)
	}
	s.eff = eff
	if err := r.deleteTokens(ctx, s); err != nil {
		if st.Status.FailedAttempts+1 >= r.Options.DeleteAttempts {
			r.event(s, corev1.EventTypeWarning, v1alpha1.ReasonDeletionBlocked, "Delete",
				"cannot delete token %s (%v); to release this object without deleting it, set the annotation %s=true",
				st.Status.TokenID, err, v1alpha1.AnnotationForceDelete)
		}
		return err
	}
	return r.release(ctx, s)
}

// holdsToken reports whether the object may account for a token in
// Cloudflare: a token ID (the current one or a replaced zone token) or an
// issuance in flight. Every call that can create a token is preceded by a
// status write of status.pendingOperation (issue), so an object with none of
// these never made one: a typo in spec.accountRef, an account that never
// existed or never became Ready.
func holdsToken(st *v1alpha1.ServiceToken) bool {
	return st.Status.TokenID != "" || st.Status.PreviousTokenID != "" || st.Status.PendingOperation != nil
}

// deleteTokens deletes every token the object accounts for and provably
// owns (owns): the current one, a replaced zone token, and any token an
// interrupted create or replacement left. Status only says which tokens to
// look at; a token that fails the proof is left, with a Warning event, and
// the deletion still completes.
func (r *ServiceTokenReconciler) deleteTokens(ctx context.Context, s *scope) error {
	st := s.st
	acct, err := r.Accounts.ResolveForDeletion(ctx, st, accountKindOf(st))
	if err != nil {
		return fmt.Errorf("cannot reach the account to delete the token: %w", err)
	}
	s.acct = acct
	// The credential the Secret holds is the proof for a token without the
	// marker in its name; a Secret that is not ours proves nothing.
	if err := r.observeSecret(ctx, s); err != nil {
		if _, isCause := asCause(err); !isCause {
			return err
		}
	}
	pending := st.Status.PendingOperation
	if pending != nil && pending.Type != v1alpha1.OperationRotate {
		// only a list made after the attempt can show what it created
		s.view, err = r.Inventory.Refresh(ctx, acct.Client, acct.Shared, acct.Scope)
	} else {
		s.view, err = r.Inventory.Lookup(ctx, acct.Client, acct.Shared, acct.Scope, time.Time{})
	}
	if err != nil {
		return fmt.Errorf("listing tokens: %w", err)
	}
	ids := []string{st.Status.TokenID, st.Status.PreviousTokenID}
	if pending != nil && pending.Type != v1alpha1.OperationRotate {
		for _, t := range s.lostIssuance(pending) {
			ids = append(ids, t.ID)
		}
	}
	for i, id := range ids {
		if id == "" || slices.Contains(ids[:i], id) {
			continue
		}
		what := "token"
		if id == st.Status.PreviousTokenID {
			what = "replaced zone token"
		}
		if err := r.deleteIfOwned(ctx, s, id, what); err != nil {
			return err
		}
	}
	return nil
}

func accountKindOf(st *v1alpha1.ServiceToken) string {
	if st.Spec.AccountRef.Kind == "" {
		return v1alpha1.KindCloudflareAccount
	}
	return st.Spec.AccountRef.Kind
}

// release removes the finalizer; the API server then deletes the object.
func (r *ServiceTokenReconciler) release(ctx context.Context, s *scope) error {
	r.Renewals.Remove(types.NamespacedName{Namespace: s.st.Namespace, Name: s.st.Name})
	r.wrote.Delete(s.st.UID)
	err := patchFinalizers(ctx, r.Client, s.st, func() { controllerutil.RemoveFinalizer(s.st, v1alpha1.Finalizer) })
	switch {
	case apierrors.IsNotFound(err): // gone already
		controllerutil.RemoveFinalizer(s.st, v1alpha1.Finalizer)
	case err != nil: // the finalizer stays: finish retries
		return fmt.Errorf("removing finalizer: %w", err)
	}
	return nil
}

// keepOrphaned makes deletionPolicy Orphan keep what it promises, ready to
// be adopted elsewhere (the adopt-token-id annotation): the Secret loses
// this object's ownerReference and the managed label, so garbage collection
// leaves it when the ServiceToken goes, and the token loses this object's
// "#<uid>" marker, so another ServiceToken may adopt it. Only the Secret
// must succeed (else it would be collected with the object); the rename is
// best effort, as an unreachable account must not hold a deletion that
// deletes nothing.
func (r *ServiceTokenReconciler) keepOrphaned(ctx context.Context, s *scope) error {
	if err := r.releaseSecretOf(ctx, s.st); err != nil {
		return fmt.Errorf("keeping Secret %s for deletionPolicy Orphan: %w", s.st.Status.SecretName, err)
	}
	if err := r.unmarkOrphan(ctx, s); err != nil {
		r.event(s, corev1.EventTypeWarning, "OrphanMarkerKept", "Delete",
			"token %s keeps the marker %q in its name (%v): before another ServiceToken can adopt it, remove the marker from its name in Cloudflare",
			s.st.Status.TokenID, v1alpha1.OwnerMarker(s.st.UID), err)
	}
	return nil
}

// releaseSecretOf drops st's ownerReference and the managed label from the
// Secret it controls, keeping everything else.
func (r *ServiceTokenReconciler) releaseSecretOf(ctx context.Context, st *v1alpha1.ServiceToken) error {
	name := st.Status.SecretName
	if name == "" {
		return nil
	}
	secret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: st.Namespace, Name: name}, secret); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(secret, st) {
		return nil // not ours (or released already)
	}
	base := secret.DeepCopy()
	secret.OwnerReferences = slices.DeleteFunc(secret.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == st.UID })
	delete(secret.Labels, v1alpha1.LabelManaged)
	// The optimistic lock keeps other owners' references: a merge patch
	// replaces the list whole.
	return client.IgnoreNotFound(r.Patch(ctx, secret, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})))
}

// unmarkOrphan renames the token to its name without this object's marker,
// after reading it: status alone does not prove which token is ours.
func (r *ServiceTokenReconciler) unmarkOrphan(ctx context.Context, s *scope) error {
	st := s.st
	if st.Status.TokenID == "" {
		return nil
	}
	acct, err := r.Accounts.ResolveForDeletion(ctx, st, accountKindOf(st))
	if err != nil {
		return err
	}
	t, err := acct.Client.Get(ctx, acct.Scope, st.Status.TokenID)
	if err != nil {
		return client.IgnoreNotFound(ignoreCFNotFound(err))
	}
	if uid, ok := v1alpha1.MarkerOf(t.Name); !ok || uid != st.UID {
		return nil
	}
	_, err = acct.Client.Update(ctx, acct.Scope, t.ID, cf.TokenSpec{Name: v1alpha1.UnmarkedTokenName(t.Name), Enabled: t.Enabled})
	return err
}

func ignoreCFNotFound(err error) error {
	if cf.IsNotFound(err) {
		return nil
	}
	return err
}
