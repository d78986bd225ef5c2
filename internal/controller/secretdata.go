package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// This file renders the operator's part of a Secret and reads the credential
// back from it. The operator owns only what it renders: two data keys, the
// managed label, spec.secret's labels and annotations and its own
// bookkeeping annotations. Everything else on the Secret belongs to others
// and is neither written nor compared.

// Bookkeeping annotations that let the operator check, without asking
// Cloudflare, that the Secret still holds the credential it wrote.
const (
	annotationIssuedAt   = "access.servicetoken.dev/issued-at"
	annotationSecretHash = "access.servicetoken.dev/client-secret-sha256"
	// annotationDataKeys records the data keys the credential was written
	// under, so renaming spec.secret.keys re-keys the stored credential
	// instead of losing it (which would cost a rotation, or a new token ID).
	annotationDataKeys = "access.servicetoken.dev/data-keys"
	// annotationTemplate is a digest of spec.secret's labels and annotations
	// as last written: a change (a removed label too) is written once, and
	// labels or annotations that others add never cause a write.
	annotationTemplate = "access.servicetoken.dev/template-sha256"
)

// dataKeys are the Secret data keys of the client ID and the client secret.
type dataKeys struct{ ClientID, ClientSecret string }

func keysOf(eff v1alpha1.Effective) dataKeys {
	return dataKeys{ClientID: eff.ClientIDKey, ClientSecret: eff.ClientSecretKey}
}

func (k dataKeys) String() string { return k.ClientID + "," + k.ClientSecret }

func parseDataKeys(s string) (dataKeys, bool) {
	id, secret, ok := strings.Cut(s, ",")
	return dataKeys{ClientID: id, ClientSecret: secret}, ok && id != "" && secret != "" && id != secret
}

// storedCredential is a credential as the operator wrote it into a Secret.
// Its String method masks the secret.
type storedCredential struct {
	ClientID, ClientSecret string
	TokenID                string
	OperationID            string // the issuance that produced it ("" for Secrets written before IDs)
	IssuedAt               time.Time
	Keys                   dataKeys
}

func (c storedCredential) String() string {
	return "storedCredential{TokenID:" + c.TokenID + " ClientID:" + c.ClientID + " OperationID:" + c.OperationID + " ClientSecret:<redacted>}"
}

func (c storedCredential) GoString() string { return c.String() }

// readCredential reads back the credential the operator wrote into secret,
// under the keys recorded with it (fallback for Secrets written before keys
// were recorded). ok is false when it is missing or was changed by anyone
// but us (the value no longer matches the recorded hash).
func readCredential(secret *corev1.Secret, fallback dataKeys) (storedCredential, bool) {
	if secret == nil {
		return storedCredential{}, false
	}
	keys, ok := parseDataKeys(secret.Annotations[annotationDataKeys])
	if !ok {
		keys = fallback
	}
	c := storedCredential{
		ClientID:     string(secret.Data[keys.ClientID]),
		ClientSecret: string(secret.Data[keys.ClientSecret]),
		TokenID:      secret.Annotations[v1alpha1.AnnotationTokenID],
		OperationID:  secret.Annotations[v1alpha1.AnnotationOperationID],
		Keys:         keys,
	}
	c.IssuedAt, _ = time.Parse(time.RFC3339, secret.Annotations[annotationIssuedAt])
	ok = c.ClientID != "" && c.ClientSecret != "" && c.TokenID != "" &&
		secret.Annotations[annotationSecretHash] == hashSecret([]byte(c.ClientSecret))
	return c, ok
}

func hashSecret(v []byte) string {
	h := sha256.Sum256(v)
	return hex.EncodeToString(h[:])
}

// secretContent is everything the operator owns in its Secret.
type secretContent struct {
	Namespace, Name string
	Owner           metav1.OwnerReference
	Cred            storedCredential // Keys: the keys to write it under now
	ExpiresAt       time.Time        // zero: never
	// Labels and Annotations from spec.secret.
	Labels, Annotations map[string]string
}

// desiredLabels, desiredAnnotations and desiredData are the operator's part.
func (c secretContent) desiredLabels() map[string]string {
	labels := maps.Clone(c.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[v1alpha1.LabelManaged] = "true"
	return labels
}

func (c secretContent) desiredAnnotations() map[string]string {
	a := maps.Clone(c.Annotations)
	if a == nil {
		a = map[string]string{}
	}
	a[v1alpha1.AnnotationTokenID] = c.Cred.TokenID
	a[v1alpha1.AnnotationExpiresAt] = ""
	if !c.ExpiresAt.IsZero() {
		a[v1alpha1.AnnotationExpiresAt] = c.ExpiresAt.UTC().Format(time.RFC3339)
	}
	if c.Cred.OperationID != "" {
		a[v1alpha1.AnnotationOperationID] = c.Cred.OperationID
	}
	a[annotationIssuedAt] = c.Cred.IssuedAt.UTC().Format(time.RFC3339)
	a[annotationSecretHash] = hashSecret([]byte(c.Cred.ClientSecret))
	a[annotationDataKeys] = c.Cred.Keys.String()
	a[annotationTemplate] = templateDigest(c.Labels, c.Annotations)
	return a
}

func (c secretContent) desiredData() map[string][]byte {
	return map[string][]byte{
		c.Cred.Keys.ClientID:     []byte(c.Cred.ClientID),
		c.Cred.Keys.ClientSecret: []byte(c.Cred.ClientSecret),
	}
}

// templateDigest is a digest of spec.secret's labels and annotations.
func templateDigest(labels, annotations map[string]string) string {
	h := sha256.New()
	for _, m := range []map[string]string{labels, annotations} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			h.Write([]byte(k + "\x00" + m[k] + "\x00"))
		}
		h.Write([]byte{0xff})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// renderSecret is the server-side apply request for the operator's part.
func renderSecret(c secretContent) *corev1ac.SecretApplyConfiguration {
	data := c.desiredData()
	return corev1ac.Secret(c.Name, c.Namespace).
		WithLabels(c.desiredLabels()).
		WithAnnotations(c.desiredAnnotations()).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(c.Owner.APIVersion).WithKind(c.Owner.Kind).WithName(c.Owner.Name).WithUID(c.Owner.UID).
			WithController(true).WithBlockOwnerDeletion(true)).
		WithType(corev1.SecretTypeOpaque).
		WithData(data)
}

// upToDate reports whether secret already holds everything renderSecret
// would write. Only the operator's part is compared: what others added is
// not a difference, so a policy engine that labels the Secret causes no
// write loop.
func upToDate(secret *corev1.Secret, c secretContent) bool {
	if secret == nil || !metav1.IsControlledBy(secret, ownerStub(c.Owner)) {
		return false
	}
	for k, v := range c.desiredLabels() {
		if got, ok := secret.Labels[k]; !ok || got != v {
			return false
		}
	}
	for k, v := range c.desiredAnnotations() {
		if got, ok := secret.Annotations[k]; !ok || got != v {
			return false
		}
	}
	for k, v := range c.desiredData() {
		if got, ok := secret.Data[k]; !ok || string(got) != string(v) {
			return false
		}
	}
	return true
}

// ownerStub is an object with the owner's UID, for metav1.IsControlledBy.
func ownerStub(ref metav1.OwnerReference) metav1.Object {
	return &metav1.ObjectMeta{UID: ref.UID}
}
