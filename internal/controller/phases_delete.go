package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
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
		r.event(s, corev1.EventTypeNormal, "Orphaned", "Delete", "deletionPolicy Orphan: token %s is left in Cloudflare", st.Status.TokenID)
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
	err := patchFinalizers(ctx, r.Client, s.st, func() { controllerutil.RemoveFinalizer(s.st, v1alpha1.Finalizer) })
	switch {
	case apierrors.IsNotFound(err): // gone already
		controllerutil.RemoveFinalizer(s.st, v1alpha1.Finalizer)
	case err != nil: // the finalizer stays: finish retries
		return fmt.Errorf("removing finalizer: %w", err)
	}
	return nil
}
