package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
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

// Annotations on the Secret that let the operator check, without reading
// Cloudflare, that the Secret still holds the credential it wrote.
const (
	annotationIssuedAt   = "access.servicetoken.dev/issued-at"
	annotationSecretHash = "access.servicetoken.dev/client-secret-sha256"
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
	s.secretOK = s.st.Status.TokenID != "" && secret.Annotations[v1alpha1.AnnotationTokenID] == s.st.Status.TokenID &&
		secretMatches(secret, s.eff, s.st.Status.ClientID)
	return nil
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
	s.secretOK = old.Annotations[v1alpha1.AnnotationTokenID] == s.st.Status.TokenID &&
		secretMatches(old, s.eff, s.st.Status.ClientID)
	return nil
}

// secretMatches checks that the Secret holds clientID and the secret whose
// hash the operator recorded when it wrote it (an edited value fails).
func secretMatches(secret *corev1.Secret, eff v1alpha1.Effective, clientID string) bool {
	value := secret.Data[eff.ClientSecretKey]
	return clientID != "" && string(secret.Data[eff.ClientIDKey]) == clientID && len(value) > 0 &&
		secret.Annotations[annotationSecretHash] == hashSecret(value)
}

func hashSecret(v []byte) string {
	h := sha256.Sum256(v)
	return hex.EncodeToString(h[:])
}

func issuedAt(secret *corev1.Secret) time.Time {
	if secret == nil {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339, secret.Annotations[annotationIssuedAt])
	return t
}

// storeCredentials writes a secret Cloudflare just returned, before anything
// else can fail: it is the only copy there will ever be.
func (r *ServiceTokenReconciler) storeCredentials(ctx context.Context, s *scope, creds cf.Credentials) error {
	s.creds = &creds
	data := map[string][]byte{
		s.eff.ClientIDKey:     []byte(creds.ClientID),
		s.eff.ClientSecretKey: []byte(creds.ClientSecret),
	}
	if err := r.writeSecret(ctx, s, data, s.now); err != nil {
		return fmt.Errorf("storing the new credential of token %s: %w", creds.ID, err)
	}
	s.secretOK = true
	return nil
}

// ensureSecret keeps the Secret's data, labels and annotations as the spec
// says, once the credential in it is known to be good.
func (r *ServiceTokenReconciler) ensureSecret(ctx context.Context, s *scope) error {
	if s.token == nil {
		return nil
	}
	if old := s.movedFrom; old != nil {
		if s.creds == nil && s.secretOK {
			if err := r.writeSecret(ctx, s, old.Data, issuedAt(old)); err != nil {
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
	desired := r.desiredSecret(s, s.secret.Data, issuedAt(s.secret))
	if maps.Equal(desired.Labels, s.secret.Labels) && maps.Equal(desired.Annotations, s.secret.Annotations) {
		s.st.Status.SecretName = s.secret.Name
		return nil
	}
	return r.writeSecret(ctx, s, s.secret.Data, issuedAt(s.secret))
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
	// Indexed by controller UID: this costs the object's own Secrets, not the namespace's.
	if err := r.List(ctx, list, client.InNamespace(s.st.Namespace), client.MatchingFields{secretOwnerIndex: string(s.st.UID)}); err != nil {
		return fmt.Errorf("listing Secrets: %w", err)
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

// desiredSecret is the Secret as the spec and the token say it should be.
func (r *ServiceTokenReconciler) desiredSecret(s *scope, data map[string][]byte, issued time.Time) *corev1.Secret {
	labels := map[string]string{}
	maps.Copy(labels, s.specSecretLabels())
	labels[v1alpha1.LabelManaged] = "true"
	annotations := map[string]string{}
	maps.Copy(annotations, s.specSecretAnnotations())
	annotations[v1alpha1.AnnotationTokenID] = s.token.ID
	annotations[v1alpha1.AnnotationExpiresAt] = ""
	if !s.token.ExpiresAt.IsZero() {
		annotations[v1alpha1.AnnotationExpiresAt] = s.token.ExpiresAt.UTC().Format(time.RFC3339)
	}
	annotations[annotationIssuedAt] = issued.UTC().Format(time.RFC3339)
	annotations[annotationSecretHash] = hashSecret(data[s.eff.ClientSecretKey])
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: s.eff.SecretName, Namespace: s.st.Namespace, Labels: labels, Annotations: annotations},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
}

func (s *scope) specSecretLabels() map[string]string {
	if s.st.Spec.Secret == nil {
		return nil
	}
	return s.st.Spec.Secret.Labels
}

func (s *scope) specSecretAnnotations() map[string]string {
	if s.st.Spec.Secret == nil {
		return nil
	}
	return s.st.Spec.Secret.Annotations
}

// writeSecret creates or replaces the Secret with the given data.
func (r *ServiceTokenReconciler) writeSecret(ctx context.Context, s *scope, data map[string][]byte, issued time.Time) error {
	desired := r.desiredSecret(s, data, issued)
	if err := controllerutil.SetControllerReference(s.st, desired, r.Scheme()); err != nil {
		return err
	}
	if s.secret == nil {
		if err := r.Create(ctx, desired); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return terminal(v1alpha1.ReasonSecretConflict, "Secret %s appeared meanwhile and is not managed by this ServiceToken; it was left untouched", desired.Name)
			}
			return fmt.Errorf("creating Secret %s: %w", desired.Name, err)
		}
	} else {
		desired.ResourceVersion = s.secret.ResourceVersion
		if err := r.Update(ctx, desired); err != nil {
			return fmt.Errorf("updating Secret %s: %w", desired.Name, err)
		}
	}
	s.secret = desired
	s.st.Status.SecretName = desired.Name
	waitForCache(ctx, r.Client, desired)
	return nil
}
