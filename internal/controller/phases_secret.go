package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// observeSecret finds the ServiceToken's Secret. A Secret of that name that
// is not ours is a conflict: it is left untouched and nothing is created.
func (r *ServiceTokenReconciler) observeSecret(ctx context.Context, s *scope) error {
	key := types.NamespacedName{Namespace: s.st.Namespace, Name: s.eff.SecretName}
	secret := &corev1.Secret{}
	err := r.Get(ctx, key, secret) // the cache holds only Secrets labelled as ours
	if apierrors.IsNotFound(err) {
		// A Secret the cache cannot see is not labelled as ours: check for it
		// before creating a token we could not store.
		err = r.APIReader.Get(ctx, key, secret)
		if apierrors.IsNotFound(err) {
			return r.moveSecret(ctx, s)
		}
	}
	if err != nil {
		return fmt.Errorf("reading Secret %s: %w", key, err)
	}
	if !metav1.IsControlledBy(secret, s.st) {
		return terminal(v1alpha1.ReasonSecretConflict,
			"Secret %s already exists and is not managed by this ServiceToken; it was left untouched. Delete or rename it, or set spec.secret.name",
			s.eff.SecretName)
	}
	s.secret = secret
	s.held, s.heldOK = readCredential(secret, keysOf(s.eff))
	s.secretOK = s.holdsCurrent()
	return nil
}

// holdsCurrent reports whether the Secret holds the credential of the token
// status names.
func (s *scope) holdsCurrent() bool {
	st := s.st.Status
	return s.heldOK && st.TokenID != "" && s.held.TokenID == st.TokenID && s.held.ClientID == st.ClientID
}

// moveSecret handles a renamed spec.secret.name: the credential is copied
// from the old Secret (it can't be read back from Cloudflare), which is then
// deleted. Without an old Secret there is nothing to do.
func (r *ServiceTokenReconciler) moveSecret(ctx context.Context, s *scope) error {
	oldName := s.st.Status.SecretName
	if oldName == "" || oldName == s.eff.SecretName {
		return nil
	}
	old := &corev1.Secret{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: s.st.Namespace, Name: oldName}, old); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(old, s.st) {
		return nil
	}
	s.movedFrom = old
	s.held, s.heldOK = readCredential(old, keysOf(s.eff))
	s.secretOK = s.holdsCurrent()
	return nil
}

// ensureSecret keeps the operator's part of the Secret (data keys, labels,
// annotations) as the spec says, once the credential in it is known to be
// good. A renamed spec.secret.keys re-keys the stored credential.
func (r *ServiceTokenReconciler) ensureSecret(ctx context.Context, s *scope) error {
	if s.token == nil {
		return nil
	}
	if old := s.movedFrom; old != nil {
		if s.creds == nil && s.secretOK {
			if err := r.writeSecret(ctx, s, s.held); err != nil {
				return err
			}
		}
		if err := r.Delete(ctx, old); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting the old Secret %s: %w", old.Name, err)
		}
		s.movedFrom = nil
		return nil
	}
	if s.creds != nil || !s.secretOK || s.secret == nil {
		return nil // renew has rotated already, or failed and returned
	}
	if upToDate(s.secret, r.secretContent(s, s.held)) {
		s.st.Status.SecretName = s.secret.Name
		return nil
	}
	return r.writeSecret(ctx, s, s.held)
}

// cleanupSecrets deletes Secrets this ServiceToken controls under a name
// other than spec.secret.name. moveSecret deletes the old Secret after
// copying it, but a crash (or a lost status write) between creating the new
// Secret and deleting the old one leaves the old one behind, still holding a
// credential; the next reconcile finds the new Secret and never looks back.
// Only once the current Secret holds the working credential are the others
// redundant.
func (r *ServiceTokenReconciler) cleanupSecrets(ctx context.Context, s *scope) error {
	if s.token == nil || !s.secretOK || s.secret == nil || s.secret.Name != s.eff.SecretName || s.movedFrom != nil {
		return nil
	}
	list := &corev1.SecretList{}
	// Indexed by controller UID: this costs the object's own Secrets, not the
	// namespace's. The index leaves out a Secret named after its ServiceToken
	// (the default name), so that one is looked up by name.
	if err := r.List(ctx, list, client.InNamespace(s.st.Namespace), client.MatchingFields{secretOwnerIndex: string(s.st.UID)}); err != nil {
		return fmt.Errorf("listing Secrets: %w", err)
	}
	if s.eff.SecretName != s.st.Name {
		named := corev1.Secret{}
		err := r.Get(ctx, client.ObjectKey{Namespace: s.st.Namespace, Name: s.st.Name}, &named)
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("reading Secret %s: %w", s.st.Name, err)
		}
		if err == nil {
			list.Items = append(list.Items, named)
		}
	}
	for i := range list.Items {
		old := &list.Items[i]
		if old.Name == s.eff.SecretName || !metav1.IsControlledBy(old, s.st) {
			continue
		}
		if err := r.Delete(ctx, old); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting the old Secret %s: %w", old.Name, err)
		}
	}
	return nil
}

// secretContent is the operator's part of the Secret holding cred, under
// the keys the spec asks for now.
func (r *ServiceTokenReconciler) secretContent(s *scope, cred storedCredential) secretContent {
	cred.Keys = keysOf(s.eff)
	c := secretContent{
		Namespace: s.st.Namespace, Name: s.eff.SecretName, Cred: cred,
		Owner: metav1.OwnerReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ServiceToken", Name: s.st.Name, UID: s.st.UID},
	}
	if s.token != nil {
		c.ExpiresAt = s.token.ExpiresAt
	}
	if t := s.st.Spec.Secret; t != nil {
		c.Labels, c.Annotations = t.Labels, t.Annotations
	}
	return c
}

// writeSecret applies the operator's part of the Secret with cred in it
// (server-side apply under the operator's field manager: whatever others
// added stays).
func (r *ServiceTokenReconciler) writeSecret(ctx context.Context, s *scope, cred storedCredential) error {
	content := r.secretContent(s, cred)
	written, err := r.applySecret(ctx, content)
	if err != nil {
		return err
	}
	s.secret, s.held, s.heldOK = written, content.Cred, true
	s.st.Status.SecretName = content.Name
	waitForCache(ctx, r.Client, written)
	return nil
}

func (r *ServiceTokenReconciler) applySecret(ctx context.Context, c secretContent, opts ...client.ApplyOption) (*corev1.Secret, error) {
	ac := renderSecret(c)
	opts = append(opts, client.FieldOwner(v1alpha1.FieldManager), client.ForceOwnership)
	if err := r.Apply(ctx, ac, opts...); err != nil {
		return nil, fmt.Errorf("writing Secret %s: %w", c.Name, err)
	}
	written := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: c.Name}}
	if ac.ResourceVersion != nil {
		written.ResourceVersion = *ac.ResourceVersion
	}
	if ac.UID != nil {
		written.UID = *ac.UID
	}
	written.Labels, written.Annotations, written.Data = ac.Labels, ac.Annotations, ac.Data
	written.OwnerReferences = []metav1.OwnerReference{c.Owner}
	written.OwnerReferences[0].Controller = ptrTo(true)
	return written, nil
}

func ptrTo[T any](v T) *T { return &v }

// checkSecretWritable makes sure, with a dry-run write, that a secret about
// to be issued can be stored: an admission policy, an immutable Secret or
// missing RBAC would otherwise lose every secret issued, one rotation after
// another.
func (r *ServiceTokenReconciler) checkSecretWritable(ctx context.Context, s *scope) error {
	probe := storedCredential{ClientID: "dry-run.access", ClientSecret: "dry-run", TokenID: "dry-run", IssuedAt: s.now}
	if s.token != nil {
		probe.ClientID, probe.TokenID = s.token.ClientID, s.token.ID
	}
	_, err := r.applySecret(ctx, r.secretContent(s, probe), client.DryRunAll)
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err):
		return terminal(v1alpha1.ReasonSecretNotWritable,
			"Secret %s cannot be written, so no secret was issued (it would be lost): %s. Fix the admission policy, RBAC or immutable Secret, or set spec.secret.name",
			s.eff.SecretName, string(apierrors.ReasonForError(err))+": "+errorMessage(err))
	default:
		return fmt.Errorf("checking that Secret %s can be written: %w", s.eff.SecretName, err)
	}
}

// errorMessage is the API server's message of a status error.
func errorMessage(err error) string {
	if st, ok := err.(apierrors.APIStatus); ok {
		return st.Status().Message
	}
	return err.Error()
}

// storeAttempts bounds how long storing a freshly issued credential retries:
// it exists only in memory, so it is worth waiting out an API server restart.
var storeBackoff = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: 9, Cap: 10 * time.Second}

// storeCredentials writes a secret Cloudflare just returned, before anything
// else can fail: it is the only copy there will ever be. It retries
// transient errors (and conflicts) for as long as ctx and storeBackoff allow.
func (r *ServiceTokenReconciler) storeCredentials(ctx context.Context, s *scope, creds cf.Credentials, opID string) error {
	s.creds = &creds
	cred := storedCredential{ClientID: creds.ClientID, ClientSecret: creds.ClientSecret, TokenID: creds.ID, OperationID: opID, IssuedAt: s.now}
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, storeBackoff, func(ctx context.Context) (bool, error) {
		last = r.writeSecret(ctx, s, cred)
		if last == nil {
			return true, nil
		}
		return false, retriableWrite(last)
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return fmt.Errorf("storing the new credential of token %s: %w", creds.ID, last)
	}
	s.secretOK = true
	return nil
}

// retriableWrite returns nil for errors worth retrying (the write may
// succeed later) and err itself for those that will not.
func retriableWrite(err error) error {
	switch {
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err):
		return err
	}
	return nil
}
