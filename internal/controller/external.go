package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// rememberUpdate records the token's updated_at from a response to a change
// the operator made (or from the token as found, when it takes one on), so
// that a later updated_at it did not cause stands out. A response without
// updated_at clears it: the next list gives the new baseline, and a
// comparison with the old one would take our own change for someone else's.
func rememberUpdate(st *v1alpha1.ServiceToken, resp cf.Token) {
	if !resp.Knows(cf.FieldUpdatedAt) || resp.UpdatedAt.IsZero() {
		forgetUpdate(st)
		return
	}
	t := metav1.NewMicroTime(resp.UpdatedAt.UTC().Truncate(time.Microsecond))
	st.Status.TokenUpdatedAt = &t
}

// rememberWrite is rememberUpdate for a token the operator just changed
// (or took on), also kept in memory for noticeExternalChange.
func (r *ServiceTokenReconciler) rememberWrite(s *scope, t cf.Token) {
	rememberUpdate(s.st, t)
	if u := s.st.Status.TokenUpdatedAt; u != nil {
		r.wrote.Store(s.st.UID, u.Time)
	}
}

// forgetUpdate drops the recorded updated_at after a change whose answer did
// not carry it (or never came): the next list gives the baseline, and nothing
// is taken for someone else's change meanwhile.
func forgetUpdate(st *v1alpha1.ServiceToken) { st.Status.TokenUpdatedAt = nil }

// noticeExternalChange compares the token with what the operator last knew
// of it. Cloudflare shows a rotation only by a new updated_at, so an
// updated_at that moved with nothing readable changed is taken for a
// rotation made elsewhere, which revoked the secret the Secret holds (unless
// given a grace period nobody can see): renew rotates at once to hand
// workloads a working secret. A readable change (a rename, a refresh, a
// disabled token) is corrected to the spec by ensureToken, and said so.
func (r *ServiceTokenReconciler) noticeExternalChange(s *scope) {
	st, t := s.st, s.token
	if t == nil || st.Status.PendingOperation != nil || !t.Knows(cf.FieldUpdatedAt) || t.UpdatedAt.IsZero() {
		return
	}
	seen := st.Status.TokenUpdatedAt
	now := t.UpdatedAt.UTC().Truncate(time.Microsecond)
	if seen == nil { // first sight (or our last change's response did not say): the baseline
		rememberUpdate(st, *t)
		return
	}
	if !now.After(seen.Time) {
		return
	}
	rememberUpdate(st, *t)
	if ours, ok := r.wrote.Load(st.UID); ok && ours.(time.Time).Equal(now) {
		return // our own change, whose status write did not land
	}
	if st.Generation != st.Status.ObservedGeneration {
		// A spec change was being applied: an update whose answer was lost
		// (a crash, a dropped response) moves updated_at to no visible end
		// (the token now matches the new spec). Not someone else's change.
		return
	}
	var what []string
	if t.Knows(cf.FieldName) && st.Status.TokenName != "" && t.Name != st.Status.TokenName {
		what = append(what, fmt.Sprintf("renamed to %q", t.Name))
	}
	if t.Knows(cf.FieldDuration) && !v1alpha1.SameDuration(t.Duration, s.eff.Duration) {
		what = append(what, fmt.Sprintf("duration set to %s", t.Duration))
	}
	// Status keeps whole seconds; Cloudflare's times have fractions.
	if t.Knows(cf.FieldExpiresAt) && st.Status.ExpiresAt != nil && t.ExpiresAt.Sub(st.Status.ExpiresAt.Time).Abs() >= time.Second {
		what = append(what, "expiry moved to "+formatTime(t.ExpiresAt))
	}
	disabled := t.Knows(cf.FieldEnabled) && !t.Enabled && s.eff.Enabled
	if disabled {
		what = append(what, "disabled")
	}
	change := v1alpha1.ExternalChange{ObservedTime: metav1.Time{Time: s.now}}
	switch {
	case len(what) == 0:
		s.externalRotation = true
		change.Kind = v1alpha1.ExternalRotated
		change.Message = fmt.Sprintf("updated_at moved from %s to %s with nothing readable changed: the token may have been rotated, "+
			"which revokes the secret workloads hold; the operator rotated it to store a working secret", formatMicro(seen.Time), formatMicro(now))
	case disabled:
		change.Kind = v1alpha1.ExternalDisabled
		change.Message = fmt.Sprintf("%s outside the operator; enabled again as spec.enabled asks (set spec.enabled: false to keep it disabled)",
			strings.Join(what, ", "))
	default:
		change.Kind = v1alpha1.ExternalModified
		change.Message = strings.Join(what, ", ") + " outside the operator; set back to the spec"
	}
	st.Status.LastExternalChange = &change
	r.event(s, corev1.EventTypeWarning, v1alpha1.ReasonChangedOutsideOperator, "Observe", "token %s: %s", t.ID, change.Message)
}

// noticeDeleted records a token gone from Cloudflare that the operator did
// not delete.
func (r *ServiceTokenReconciler) noticeDeleted(s *scope, id string) {
	s.st.Status.LastExternalChange = &v1alpha1.ExternalChange{
		Kind: v1alpha1.ExternalDeleted, ObservedTime: metav1.Time{Time: s.now},
		Message: fmt.Sprintf("token %s was deleted outside the operator (by someone, or by Cloudflare's cleanup of inactive tokens); "+
			"a new token was created, with a new ID", id),
	}
}

func formatMicro(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// adoptRequested hands the token named by the adopt-token-id annotation to
// this ServiceToken, once (status.adoptedTokenID). Only a ServiceToken
// without a token of its own adopts; the token must be in the referenced
// account (a GET there) and carry no other ServiceToken's marker, so a
// namespace cannot take over a token another ServiceToken made. The token
// is then renamed to the spec (ensureToken) and rotated with the grace
// period (renew), which gives the Secret a secret and proves the token ours
// from then on; its old secret works until the grace ends.
func (r *ServiceTokenReconciler) adoptRequested(ctx context.Context, s *scope) error {
	st := s.st
	id := strings.TrimSpace(st.Annotations[v1alpha1.AnnotationAdoptTokenID])
	if id == "" || st.Status.AdoptedTokenID == id || st.Status.PendingOperation != nil {
		return nil
	}
	if st.Status.TokenID == id { // adopted, but the record of it was not written
		st.Status.AdoptedTokenID = id
		return nil
	}
	refuse := func(format string, args ...any) error {
		msg := fmt.Sprintf(format, args...) + fmt.Sprintf("; remove or correct the %s annotation", v1alpha1.AnnotationAdoptTokenID)
		if st.Status.TokenID != "" { // the token it has keeps working and being renewed
			s.blocked = terminal(v1alpha1.ReasonAdoptionFailed, "%s", msg)
			return nil
		}
		return terminal(v1alpha1.ReasonAdoptionFailed, "%s", msg) // and nothing is created
	}
	switch {
	case st.Status.TokenID != "":
		return refuse("cannot adopt token %s: this ServiceToken already has token %s", id, st.Status.TokenID)
	case s.acct.Scope.IsZone():
		return refuse("cannot adopt token %s: a zone token cannot be rotated, so its secret cannot be obtained", id)
	}
	t, err := s.acct.Client.Get(ctx, s.acct.Scope, id)
	switch {
	case cf.IsNotFound(err):
		return refuse("cannot adopt token %s: there is no such token in account %s", id, s.acct.Scope.AccountID)
	case err != nil:
		return fmt.Errorf("reading token %s to adopt it: %w", id, err)
	}
	if uid, marked := v1alpha1.MarkerOf(t.Name); marked && uid != st.UID {
		return refuse("cannot adopt token %s (%q): it was made by another ServiceToken (UID %s); delete that ServiceToken with "+
			"deletionPolicy: Orphan first, which releases the token", id, t.Name, uid)
	}
	r.adopt(s, t)
	r.Inventory.Put(s.acct.Shared, s.acct.Scope, t)
	// Vouched for at once: until the rotation below stores a secret, nothing
	// else proves it ours (an explicit spec.tokenName carries no marker), and
	// an interrupted adoption must carry on, not stop at TokenNotOwned.
	st.Status.OwnershipProof = s.acct.Client.Vouch(string(st.UID), t.ID)
	st.Status.AdoptedTokenID = id
	s.adopting = true
	r.event(s, corev1.EventTypeNormal, "Adopted", "Adopt",
		"adopted token %s (%q) as the annotation %s asks; rotating it to obtain a secret (its old secret works until the grace period ends)",
		id, t.Name, v1alpha1.AnnotationAdoptTokenID)
	return nil
}
