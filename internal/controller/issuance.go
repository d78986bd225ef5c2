package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// The issuance of a secret is one promise, kept in this file: the intent is
// recorded (status.pendingOperation, with an operation ID) → Cloudflare is
// called → the credential is stored in the Secret together with the
// operation ID → the outcome is settled. A crash, a shutdown, a conflict or
// a lost response anywhere in between is settled on the next reconcile by
// comparing operation IDs (settlePending), never clocks.

// IssuanceTimeout bounds one issuance once it has started, from its intent
// to its status write. It runs to completion even when the manager is asked
// to stop: the manager's graceful shutdown timeout must be longer (the
// --graceful-shutdown-timeout flag, 60s by default, and the chart's
// terminationGracePeriodSeconds cover it).
const IssuanceTimeout = 45 * time.Second

func newOperationID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// graceSlack is added to the previous secret's grace period, because the
// grace is promised from when the new secret is in the Secret, and the
// expiry Cloudflare is told must be set before the call: the call and the
// Secret write take a moment (seconds; longer only under faults).
const graceSlack = 15 * time.Second

// issue runs one secret-issuing call as a journal entry. Before anything is
// minted it checks the budget and that the Secret can be written; from the
// intent on it no longer listens to ctx's cancellation (a shutdown), only to
// IssuanceTimeout, because a call cut off after Cloudflare committed it
// loses a secret and, for a rotate, forces the held secret's revocation.
// grace > 0 sets op.PreviousSecretExpiresAt (from the clock at the call,
// plus graceSlack) for call to pass to Cloudflare. On success op.ID is the
// operation's ID, the credential is in the Secret and s.token is the token
// it belongs to; the caller records what the operation means in status.
func (r *ServiceTokenReconciler) issue(ctx context.Context, s *scope, op *v1alpha1.PendingOperation, grace time.Duration,
	call func(context.Context, *v1alpha1.PendingOperation) (cf.Credentials, error)) (cf.Credentials, error) {
	if err := r.admit(ctx, s, strings.ToLower(string(op.Type))); err != nil {
		return cf.Credentials{}, err
	}
	if err := r.checkSecretWritable(ctx, s); err != nil {
		return cf.Credentials{}, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), IssuanceTimeout)
	defer cancel()
	s.persist = true
	// A recovery keeps the entry it recovers from until it succeeds: if this
	// call certainly issues nothing, that entry is what status must keep.
	prior := s.st.Status.PendingOperation
	op.ID, op.StartedAt = newOperationID(), metav1.Time{Time: s.now}
	op.PreviousSecretExpiresAt = nil
	if grace > 0 {
		// Whole seconds, rounded up: status keeps seconds, and the record must
		// not promise less than Cloudflare was told.
		at := r.Clock.Now().Add(grace + graceSlack + time.Second - 1).Truncate(time.Second)
		op.PreviousSecretExpiresAt = &metav1.Time{Time: at}
	}
	s.st.Status.PendingOperation = op.DeepCopy()
	// The account is recorded with the intent: a lost create is then
	// settled, and a token deleted, only in the account it was made in.
	s.st.Status.AccountID = s.acct.Scope.AccountID
	if err := r.patchStatus(ctx, s); err != nil {
		s.st.Status.PendingOperation = prior // nothing was called
		return cf.Credentials{}, fmt.Errorf("recording pending %s: %w", op.Type, err)
	}
	known := s.token
	creds, err := call(ctx, op)
	if err != nil {
		if cf.KindOf(err) != cf.KindOutcomeUnknown {
			s.st.Status.PendingOperation = prior // certainly nothing issued
		}
		return cf.Credentials{}, err
	}
	eff := s.eff
	if op.TokenName != "" {
		eff.TokenName = op.TokenName // a new token has the (marked) name it was created with
	}
	creds.Token = withKnown(creds.Token, known, eff, s.now)
	s.token = &creds.Token
	if err := r.storeCredentials(ctx, s, creds, op.ID); err != nil {
		s.secretOK = false           // the held secret may now be "previous"
		return cf.Credentials{}, err // pending stays: the next reconcile settles it by ID
	}
	s.st.Status.PendingOperation = nil
	ctrl.LoggerFrom(ctx).Info("issued a secret", "operation", op.Type, "operationID", op.ID, "tokenID", creds.ID,
		"secret", s.eff.SecretName, "why", s.why, "previousSecretExpiresAt", timeOf(op.PreviousSecretExpiresAt))
	return creds, nil
}

// settlePending decides what an interrupted Create, Replace or Rotate did.
// The Secret carries the operation ID of the issuance that wrote it: the
// same ID means the secret was stored and only the status write was lost.
func (r *ServiceTokenReconciler) settlePending(ctx context.Context, s *scope, p *v1alpha1.PendingOperation) error {
	s.persist = true
	s.st.Status.PendingOperation = nil
	stored, err := r.storedBy(ctx, s, p)
	if err != nil {
		s.st.Status.PendingOperation = p
		return err
	}
	if stored && p.RotateRequest != "" {
		s.st.Status.LastHandledRotateRequest = p.RotateRequest
	}
	switch p.Type {
	case v1alpha1.OperationRotate:
		r.settleRotate(s, p, stored)
		return nil
	case v1alpha1.OperationReplace:
		err = r.settleReplace(ctx, s, p, stored)
	default:
		err = r.settleCreate(ctx, s, p, stored)
	}
	if stored && err == nil && s.token == nil {
		// The Secret holds the credential of a token the list did not show:
		// confirm it with a GET before anything is recreated.
		err = r.confirmStoredToken(ctx, s)
	}
	if err != nil {
		s.st.Status.PendingOperation = p // settle again: nothing may leak
	}
	return err
}

// storedBy reports whether the Secret holds the credential operation p
// issued. A "no" from the cache is checked against the API server: the
// cache may not have seen the write yet, and acting on "not stored" revokes
// or deletes what the Secret holds.
func (r *ServiceTokenReconciler) storedBy(ctx context.Context, s *scope, p *v1alpha1.PendingOperation) (bool, error) {
	if p.ID == "" {
		return false, nil // a journal entry from before operation IDs
	}
	if s.heldOK && s.held.OperationID == p.ID {
		return true, nil
	}
	live := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: s.st.Namespace, Name: s.eff.SecretName}, live)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading Secret %s to settle an interrupted %s: %w", s.eff.SecretName, p.Type, err)
	}
	if !metav1.IsControlledBy(live, s.st) {
		return false, nil
	}
	held, ok := readCredential(live, keysOf(s.eff))
	if !ok || held.OperationID != p.ID {
		return false, nil
	}
	s.secret, s.held, s.heldOK = live, held, true
	s.secretOK = s.holdsCurrent()
	return true, nil
}

// confirmStoredToken looks the token the Secret holds up by ID after a list
// missed it. Found, it is adopted with the Secret's credential; gone (404),
// ensureToken recreates it with a warning.
func (r *ServiceTokenReconciler) confirmStoredToken(ctx context.Context, s *scope) error {
	t, err := s.acct.Client.Get(ctx, s.acct.Scope, s.held.TokenID)
	switch {
	case err == nil:
		r.adopt(s, t)
		r.Inventory.Put(s.acct.Shared, s.acct.Scope, t)
		s.secretOK = s.holdsCurrent()
		return nil
	case cf.IsNotFound(err):
		return nil
	default:
		return fmt.Errorf("reading token %s to settle an interrupted issuance: %w", s.held.TokenID, err)
	}
}

// settleRotate: stored, the rotation is complete. Not stored, the token's
// updated_at tells whether Cloudflare committed it (a rotate moves it). If it
// did, the new secret is lost and the held secret is Cloudflare's single
// "previous" one, which any further rotation revokes: that is the one case
// Cloudflare forces on us, announced when the recovery rotation is made.
func (r *ServiceTokenReconciler) settleRotate(s *scope, p *v1alpha1.PendingOperation, stored bool) {
	if stored {
		s.secretOK = s.holdsCurrent()
		r.rotated(s, p.ID, s.held.IssuedAt, p.PreviousSecretExpiresAt)
		return
	}
	if s.token == nil {
		return // the token is gone: ensureToken recreates it
	}
	before, err := time.Parse(time.RFC3339Nano, p.TokenUpdatedAt)
	if err == nil && !s.token.UpdatedAt.IsZero() && s.token.UpdatedAt.Equal(before) {
		return // the rotate never happened: the held secret is still the current one
	}
	// It happened (updated_at moved), or we cannot tell: either way the held
	// secret may now be "previous", and only a new rotation gets a secret we
	// hold. The entry stays until that rotation succeeds: if it fails, the
	// next reconcile must not take the held secret for a working one.
	s.secretOK = false
	s.rotationLost = err == nil && !s.token.UpdatedAt.IsZero()
	s.st.Status.PendingOperation = p
}

// settleReplace: stored, the replacement is the token now and the original
// keeps its grace from when the replacement was written. Not stored, the
// replacement is held by nobody: it is deleted (found by its marked name,
// and only if this object owns it), and the original, still in the Secret,
// stays the token (a later replacement gives it its full grace).
func (r *ServiceTokenReconciler) settleReplace(ctx context.Context, s *scope, p *v1alpha1.PendingOperation, stored bool) error {
	st := s.st
	if stored {
		st.Status.TokenID, st.Status.ClientID = s.held.TokenID, s.held.ClientID
		st.Status.PreviousTokenID = p.TokenID
		s.token = nil
		if t, ok := s.view.Get(s.held.TokenID); ok {
			r.adopt(s, t)
			s.secretOK = true
		}
		// The grace recorded with the intent (call time + grace + slack), or
		// none when the user asked for 0s.
		r.rotated(s, p.ID, s.held.IssuedAt, p.PreviousSecretExpiresAt)
		return nil
	}
	for _, t := range s.lostIssuance(p) {
		if err := r.deleteToken(ctx, s, t.ID); err != nil {
			return err
		}
	}
	if st.Status.TokenID != p.TokenID { // a store failure after the create moved status on
		st.Status.TokenID = p.TokenID
		s.token = nil
		if t, ok := s.view.Get(p.TokenID); ok {
			r.adopt(s, t)
		}
		s.secretOK = s.holdsCurrent()
	}
	return nil
}

// settleCreate: stored, the token in the Secret is ours. Not stored, a
// token this create may have made is found by its marked name, which ends
// with this object's UID (its response, and so its ID, never arrived); its
// secret is lost, so recovery rotates it at once. A token that merely has
// the same spec.tokenName, made by someone else, is never taken.
func (r *ServiceTokenReconciler) settleCreate(ctx context.Context, s *scope, p *v1alpha1.PendingOperation, stored bool) error {
	if stored {
		// Never a name search here: it would take the token for one whose
		// secret is lost and revoke the secret the Secret holds.
		s.st.Status.TokenID, s.st.Status.ClientID = s.held.TokenID, s.held.ClientID
		s.st.Status.LastRotationTime = &metav1.Time{Time: s.held.IssuedAt}
		s.token = nil
		if t, ok := s.view.Get(s.held.TokenID); ok {
			r.adopt(s, t)
			s.secretOK = true
		}
		return nil
	}
	ours := s.lostIssuance(p)
	if len(ours) == 0 {
		return nil // nothing was created: ensureToken creates
	}
	newest, extras := ours[0], ours[1:]
	for _, t := range extras { // never leave a duplicate behind
		if err := r.deleteToken(ctx, s, t.ID); err != nil {
			return err
		}
	}
	r.adopt(s, newest)
	s.secretOK, s.secretUnknown = false, true
	r.event(s, corev1.EventTypeWarning, "SecretLost", "Recover",
		"token %s was created but its secret was not stored (interrupted); issuing a new secret", newest.ID)
	return nil
}

// lostIssuance returns the tokens an interrupted create or replacement p
// may have made, newest first: those under its marked name that this object
// owns, other than the tokens status and the Secret account for. A clock
// plays no part (ours and Cloudflare's differ), and neither does the name
// journalled in status, which others can write: only the marker proves.
func (s *scope) lostIssuance(p *v1alpha1.PendingOperation) []cf.Token {
	var out []cf.Token
	for _, t := range s.view.ByName(v1alpha1.MarkedTokenName(p.TokenName, s.st.UID)) {
		if t.ID != p.TokenID && t.ID != s.st.Status.PreviousTokenID && t.ID != s.held.TokenID && s.owns(t) {
			out = append(out, t)
		}
	}
	return out
}

// rotated records a completed rotation or zone replacement: when its secret
// was issued, until when the previous secret works, and, when it served a
// renewal that rotates, that the renewal's rotate step is done.
func (r *ServiceTokenReconciler) rotated(s *scope, opID string, issued time.Time, prevExpires *metav1.Time) {
	st := s.st
	st.Status.LastRotationTime = &metav1.Time{Time: issued}
	st.Status.PreviousSecretExpiresAt = nil
	if prevExpires != nil && !prevExpires.IsZero() {
		st.Status.PreviousSecretExpiresAt = prevExpires.DeepCopy()
	}
	s.secretUnknown = false
	if s.eff.RenewalAction == v1alpha1.RenewalRotate && r.renewalDue(s) {
		st.Status.RenewalRotation = opID
	}
	if r.Metrics != nil {
		r.Metrics.RecordRotation(st.Namespace, st.Name)
	}
}

// announceLostRotation tells the user that the held secret was revoked
// before its grace period: a Warning event, status.lastRotationLostTime, the
// Ready message of this reconcile and a metric.
func (r *ServiceTokenReconciler) announceLostRotation(s *scope, tokenID string) {
	s.st.Status.LastRotationLostTime = &metav1.Time{Time: s.now}
	s.note = "a rotate response was lost after Cloudflare committed it: the previous secret was revoked early (event RotationLost)"
	if r.Metrics != nil {
		r.Metrics.RecordLostRotation(s.st.Namespace, s.st.Name)
	}
	r.event(s, corev1.EventTypeWarning, v1alpha1.ReasonRotationLost, "Rotate",
		"a rotation of token %s was committed by Cloudflare but its response was lost; Cloudflare keeps one previous secret, "+
			"so the new rotation revoked the secret workloads held before its grace period ended (see docs/renewal.md)", tokenID)
}

// withKnown fills in what a create or rotate response leaves out: the
// responses Cloudflare documents for both carry no expires_at, and any field
// may be absent. A rotate keeps the token's last known state; a new token
// is what was asked for, expiring created_at (or the call) + duration until
// a list reports Cloudflare's own value. Without this, a rotated token would
// look like one that never expires, and never be renewed.
func withKnown(got cf.Token, known *cf.Token, eff v1alpha1.Effective, calledAt time.Time) cf.Token {
	if known != nil && known.ID == got.ID {
		return got.Fill(*known)
	}
	if !got.Knows(cf.FieldExpiresAt) && !eff.Forever {
		from := calledAt
		if got.Knows(cf.FieldCreatedAt) {
			from = got.CreatedAt
		}
		got.ExpiresAt = from.Add(eff.DurationValue)
	}
	if !got.Knows(cf.FieldDuration) {
		got.Duration = eff.Duration
	}
	if !got.Knows(cf.FieldName) {
		got.Name = eff.TokenName
	}
	if !got.Knows(cf.FieldEnabled) {
		got.Enabled = eff.Enabled
	}
	got.Missing &^= cf.FieldExpiresAt | cf.FieldDuration | cf.FieldName | cf.FieldEnabled
	return got
}
