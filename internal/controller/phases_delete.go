package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// reconcileDelete removes the Cloudflare token (deletionPolicy Delete) and
// then the finalizer. The Secret is owned by the ServiceToken and goes with
// it. When the account or its credentials are gone the deletion cannot
// succeed; after Options.DeleteAttempts failures the status and an event say
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
	base := s.st.DeepCopy()
	controllerutil.RemoveFinalizer(s.st, v1alpha1.Finalizer)
	if err := r.Patch(ctx, s.st, client.MergeFrom(base)); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}
