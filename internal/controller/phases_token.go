package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
	"github.com/servicetoken-operator/servicetoken-operator/internal/schedule"
)

func (r *ServiceTokenReconciler) loadSettings(_ context.Context, s *scope) error {
	eff, err := s.st.EffectiveIn(r.Options.ClusterName)
	if err != nil {
		return terminal(v1alpha1.ReasonInvalidSpec, "%v", err)
	}
	s.eff = eff
	return nil
}

func (r *ServiceTokenReconciler) resolveAccount(ctx context.Context, s *scope) error {
	acct, err := r.Accounts.Resolve(ctx, s.st, s.eff.AccountKind)
	if err != nil {
		return err
	}
	s.acct = acct
	return nil
}

// observeToken finds the token in the account's inventory, and settles an
// operation a crash or a lost response interrupted.
func (r *ServiceTokenReconciler) observeToken(ctx context.Context, s *scope) error {
	pending := s.st.Status.PendingOperation
	var view View
	var err error
	if pending != nil { // only a list made after the attempt can tell its outcome
		view, err = r.Inventory.Refresh(ctx, s.acct.Client, s.acct.Shared, s.acct.Scope)
	} else {
		view, err = r.Inventory.Lookup(ctx, s.acct.Client, s.acct.Shared, s.acct.Scope, s.now.Add(-r.Options.DriftCheckPeriod))
	}
	if err != nil {
		return fmt.Errorf("listing tokens: %w", err)
	}
	s.view = view
	if id := s.st.Status.TokenID; id != "" {
		if t, ok := view.Get(id); ok {
			if !t.Knows(cf.FieldExpiresAt) && s.st.Status.ExpiresAt != nil {
				t.ExpiresAt = s.st.Status.ExpiresAt.Time // the list did not say: keep the last known expiry
			}
			s.token = &t
			s.st.Status.AccountID = s.acct.Scope.AccountID // found there (records it for tokens made before the field)
			r.Inventory.Track(id, types.NamespacedName{Namespace: s.st.Namespace, Name: s.st.Name})
		}
	}
	if pending != nil && pending.Type == v1alpha1.OperationRotate && s.token != nil {
		// A GET made now, not a shared list that may have started before
		// the rotate committed: its updated_at decides what the rotate did.
		t, err := s.acct.Client.Get(ctx, s.acct.Scope, s.token.ID)
		switch {
		case err == nil:
			s.token = &t
			r.Inventory.Put(s.acct.Shared, s.acct.Scope, t)
		case !cf.IsNotFound(err):
			return fmt.Errorf("reading token %s to settle an interrupted rotation: %w", s.token.ID, err)
		}
	}
	if pending != nil {
		forgetUpdate(s.st) // the interrupted call may have moved updated_at: ours, not someone else's
		return r.settlePending(ctx, s, pending)
	}
	return nil
}

// adopt makes t the ServiceToken's token.
func (r *ServiceTokenReconciler) adopt(s *scope, t cf.Token) {
	s.token = &t
	st := s.st
	st.Status.TokenID, st.Status.ClientID, st.Status.TokenName = t.ID, t.ClientID, t.Name
	st.Status.AccountID = s.acct.Scope.AccountID
	r.rememberWrite(s, t)
	r.Inventory.Track(t.ID, types.NamespacedName{Namespace: st.Namespace, Name: st.Name})
}

// ensureToken creates the token when there is none, recreates one deleted
// outside the operator, and corrects name, duration and enabled in place. It
// is the gate for every later action on the token: a token this object
// cannot prove it owns is left alone (owns).
func (r *ServiceTokenReconciler) ensureToken(ctx context.Context, s *scope) error {
	if id := s.st.Status.TokenID; s.token == nil && id != "" {
		// A list is no proof that a token is gone (pages shift while
		// others delete): only a 404 for the token itself is.
		t, err := s.acct.Client.Get(ctx, s.acct.Scope, id)
		switch {
		case err == nil: // the list missed it
			r.adopt(s, t)
			r.Inventory.Put(s.acct.Shared, s.acct.Scope, t)
		case !cf.IsNotFound(err):
			return fmt.Errorf("confirming that token %s, missing from the list, is gone: %w", id, err)
		default:
			r.event(s, corev1.EventTypeWarning, "TokenMissing", "Recreate",
				"token %s no longer exists in Cloudflare (deleted outside the operator); creating a new one", id)
			r.noticeDeleted(s, id)
		}
	}
	if s.token != nil && !s.owns(*s.token) {
		return s.notOwned(*s.token)
	}
	r.noticeExternalChange(s)
	if s.token == nil {
		if err := r.freshView(ctx, s); err != nil {
			return err
		}
		if other, taken := s.nameTaken(); taken {
			return s.nameConflict(other)
		}
		if err := r.createToken(ctx, s); err != nil {
			return err
		}
	}
	name, err := r.tokenName(ctx, s)
	if err != nil {
		return err
	}
	spec, changed := desiredUpdate(*s.token, s.eff, name)
	if !changed {
		return nil
	}
	if err := r.proveBeforeRename(ctx, s, spec.Name); err != nil {
		return err
	}
	t, err := s.acct.Client.Update(ctx, s.acct.Scope, s.token.ID, spec)
	if err != nil {
		forgetUpdate(s.st)
		return fmt.Errorf("updating token %s: %w", s.token.ID, err)
	}
	r.stored(s, t)
	s.progress = v1alpha1.ReasonUpdating
	r.event(s, corev1.EventTypeNormal, "Updated", "Update", "updated token %s in place (name, duration or enabled)", t.ID)
	return nil
}

// proveBeforeRename writes status.ownershipProof before a rename takes the
// owner marker off the token's name. Until then the marker and the Secret
// are what prove the token ours, and the Secret can be deleted: a reconcile
// that failed after the rename (before vouchToken) would leave a token
// nothing proves, never renewed again and left behind on deletion (make
// chaos found one). Once per token: the proof does not depend on the name.
func (r *ServiceTokenReconciler) proveBeforeRename(ctx context.Context, s *scope, name string) error {
	if !s.marked(*s.token) || strings.HasSuffix(name, v1alpha1.OwnerMarker(s.st.UID)) {
		return nil
	}
	s.vouch()
	if s.base.Status.OwnershipProof == s.st.Status.OwnershipProof {
		return nil // already stored
	}
	if err := r.patchStatus(ctx, s); err != nil {
		return fmt.Errorf("recording the ownership proof of token %s before renaming it: %w", s.token.ID, err)
	}
	return nil
}

// tokenName is the name the token should have: the spec's, unless another
// owner's token has that explicit name. Renaming to an explicit name is
// checked against a list made during this reconcile (another cluster may
// have taken the name since the last one). Two owners who took the same
// name at once both see it later; the younger token yields, back to its
// marked name, so exactly one keeps it.
func (r *ServiceTokenReconciler) tokenName(ctx context.Context, s *scope) (string, error) {
	name := s.eff.TokenName
	if s.st.Spec.TokenName == "" {
		return name, nil // the default name carries the UID: nobody else has it
	}
	if s.token.Name != name {
		if err := r.freshView(ctx, s); err != nil {
			return "", err
		}
	}
	other, taken := s.nameTaken()
	switch {
	case !taken:
		return name, nil
	case s.token.Name != name:
		// The token keeps its name (and works); the conflict is reported
		// once the other phases have run.
		s.blocked = s.nameConflict(other)
		return s.token.Name, nil
	case older(other, *s.token):
		s.blocked = s.nameConflictKeeping(other, s.markedName())
		return s.markedName(), nil
	}
	return name, nil // ours is the older: the other owner yields
}

// freshView makes sure a name check for an explicit spec.tokenName reads a
// list made during this reconcile: another cluster may have taken the name
// since the last one. Lists are shared, so objects reconciled together pay
// for one.
func (r *ServiceTokenReconciler) freshView(ctx context.Context, s *scope) error {
	if s.st.Spec.TokenName == "" || !s.view.TakenAt.Before(s.began) {
		return nil
	}
	view, err := r.Inventory.Lookup(ctx, s.acct.Client, s.acct.Shared, s.acct.Scope, s.began)
	if err != nil {
		return fmt.Errorf("listing tokens to check that nobody has the name %q: %w", s.eff.TokenName, err)
	}
	s.view = view
	return nil
}

// older reports whether a was created before b; the ID decides a tie (or
// unknown creation times), the same way in every cluster.
func older(a, b cf.Token) bool {
	if a.Knows(cf.FieldCreatedAt) && b.Knows(cf.FieldCreatedAt) && !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}

// desiredUpdate returns the PUT body that gives t the name and the spec's
// duration and enabled, and whether one is needed. Duration is sent only
// when it differs: a PUT with a duration resets the expiry (a rename alone
// leaves it be).
//
// A field Cloudflare did not report is not compared: correcting what we
// cannot see would PUT on every reconcile.
func desiredUpdate(t cf.Token, eff v1alpha1.Effective, name string) (cf.TokenSpec, bool) {
	spec := cf.TokenSpec{Name: name, Enabled: eff.Enabled}
	changed := (t.Knows(cf.FieldName) && t.Name != name) || (t.Knows(cf.FieldEnabled) && t.Enabled != eff.Enabled)
	if t.Knows(cf.FieldDuration) && !v1alpha1.SameDuration(t.Duration, eff.Duration) {
		spec.Duration, changed = eff.Duration, true
	}
	return spec, changed
}

// createToken creates the token and stores its secret at once.
func (r *ServiceTokenReconciler) createToken(ctx context.Context, s *scope) error {
	old := s.st.Status.TokenID
	// Created under the marked name, so that a token whose response is lost
	// is found as this object's by its name (settleCreate); ensureToken
	// renames it to an explicit spec.tokenName once the secret is stored.
	spec := cf.TokenSpec{Name: s.markedName(), Duration: s.eff.Duration, Enabled: s.eff.Enabled}
	s.progress = v1alpha1.ReasonCreating
	op := v1alpha1.PendingOperation{Type: v1alpha1.OperationCreate, TokenName: spec.Name, TokenID: old}
	creds, err := r.issue(ctx, s, &op, 0, func(ctx context.Context, _ *v1alpha1.PendingOperation) (cf.Credentials, error) {
		return s.acct.Client.Create(ctx, s.acct.Scope, spec)
	})
	if err != nil {
		return fmt.Errorf("creating token: %w", err)
	}
	s.st.Status.LastRotationTime = &metav1.Time{Time: s.now} // a secret was issued
	r.adopt(s, creds.Token)
	r.Inventory.Put(s.acct.Shared, s.acct.Scope, creds.Token)
	if old == "" { // a recreate is announced as a new token ID, once its status is written
		r.event(s, corev1.EventTypeNormal, "Created", "Create", "created token %s; credential stored in Secret %s", creds.ID, s.eff.SecretName)
	}
	return nil
}

// admit checks the account's budget before a secret-issuing call: when the
// call would be refused, it is refused before the intent is written, so
// waiting for budget costs no write, and the object comes back at its own
// future slot (cf.Limiter.Admit).
func (r *ServiceTokenReconciler) admit(ctx context.Context, s *scope, op string) error {
	src, ok := r.Accounts.Factory.(cf.LimiterSource)
	if !ok {
		return nil
	}
	lim := src.Limiter(s.acct.Account.Key)
	if lim == nil {
		return nil
	}
	err := lim.Admit(ctx)
	if e, ok := err.(*cf.Error); ok {
		e.Op = op
	}
	return err
}

// stored records a token state Cloudflare returned after a write, keeping
// the last known value of any field the answer left out.
func (r *ServiceTokenReconciler) stored(s *scope, t cf.Token) {
	r.rememberWrite(s, t) // before filling: only an updated_at this answer carried
	if s.token != nil {
		t = t.Fill(*s.token)
	}
	s.token = &t
	r.Inventory.Put(s.acct.Shared, s.acct.Scope, t)
	s.st.Status.TokenName = t.Name
}

// renew refreshes or rotates when expiry is close, when routine rotation or
// a request annotation says so, or when the Secret lost the credential. A
// renewal that rotates has two steps (rotate, then refresh); the first one
// done is recorded in status.renewalRotation, so a retry only refreshes.
//
// A rotation never cuts a running grace period short (Cloudflare keeps one
// previous secret, so rotating again would revoke the one still in grace):
// it waits until the grace ends, unless the Secret lost its credential. A
// renewal that rotates counts the rotation whose grace is running as its
// own (the secret is fresh) and only refreshes, so the token never expires
// waiting.
func (r *ServiceTokenReconciler) renew(ctx context.Context, s *scope) error {
	st, eff := s.st, s.eff
	rotateReq := st.Annotations[v1alpha1.AnnotationRotateRequestedAt]
	refreshReq := st.Annotations[v1alpha1.AnnotationRefreshRequestedAt]
	renewDue := r.renewalDue(s)
	if !renewDue {
		st.Status.RenewalRotation = "" // no renewal in progress
	}
	requested := rotateReq != "" && rotateReq != st.Status.LastHandledRotateRequest
	if requested {
		s.answers = rotateReq
	}
	graceUntil, graceRuns := r.graceRunning(s)
	renewalRotates := renewDue && eff.RenewalAction == v1alpha1.RenewalRotate && st.Status.RenewalRotation == "" && !graceRuns
	wanted := requested || renewalRotates || schedule.Due(s.now, schedule.NextRotation(lastRotation(st), eff.RotateEvery))

	switch {
	case s.creds != nil: // a secret was issued in this reconcile already
	case s.adopting || s.externalRotation:
		// Even during a grace period: an adopted token's secret is not ours,
		// and a rotation made elsewhere has revoked the previous secrets.
		s.why = "adopting the token"
		if s.externalRotation {
			s.why = "the token may have been rotated outside the operator"
		}
		if err := r.rotate(ctx, s); err != nil {
			return r.refreshAnyway(ctx, s, err)
		}
	case !s.secretOK:
		if !s.secretUnknown && !s.rotationLost {
			r.event(s, corev1.EventTypeWarning, "SecretLost", "Recover",
				"Secret %s is missing or no longer holds the credential of token %s; issuing a new secret (the old one can't be read back)",
				s.eff.SecretName, s.token.ID)
		}
		s.why = "the Secret does not hold the token's credential"
		if s.rotationLost {
			s.why = "recovering a lost rotate response"
		}
		if err := r.rotate(ctx, s); err != nil {
			return r.refreshAnyway(ctx, s, err)
		}
	case wanted && graceRuns:
		s.deferredUntil = graceUntil
		s.note = fmt.Sprintf("a rotation is due but waits until %s, when the previous secret's grace period ends "+
			"(Cloudflare keeps one previous secret: rotating now would revoke it early)", formatTime(graceUntil))
	case wanted:
		s.why = rotationCause(requested, renewalRotates)
		if err := r.rotate(ctx, s); err != nil {
			return r.refreshAnyway(ctx, s, err)
		}
	}
	if s.deferredUntil.IsZero() {
		st.Status.LastHandledRotateRequest = rotateReq
	}

	renewDue = r.renewalDue(s) // a zone replacement renews
	if renewDue || (refreshReq != "" && refreshReq != st.Status.LastHandledRefreshRequest) {
		if err := r.refresh(ctx, s); err != nil {
			return err
		}
		st.Status.RenewalRotation = ""
	}
	st.Status.LastHandledRefreshRequest = refreshReq
	r.recordSchedule(s)
	return nil
}

// refreshAnyway keeps a token alive whose rotation failed (a Secret that
// cannot be written, a budget that is spent): when renewal is due the expiry
// is still extended, so the secret workloads hold does not die with the
// token. It returns the rotation's error.
func (r *ServiceTokenReconciler) refreshAnyway(ctx context.Context, s *scope, rotateErr error) error {
	if s.token != nil && s.st.Status.PendingOperation == nil && r.renewalDue(s) {
		if err := r.refresh(ctx, s); err == nil {
			r.recordSchedule(s)
		}
	}
	return rotateErr
}

func rotationCause(requested, renewal bool) string {
	switch {
	case requested:
		return "rotation requested by annotation"
	case renewal:
		return "renewal (renewal.action Rotate)"
	}
	return "rotation.every"
}

// graceRunning returns when the previous secret's grace period ends, if it
// is still running. A grace period of 0s asks for no waiting.
func (r *ServiceTokenReconciler) graceRunning(s *scope) (time.Time, bool) {
	p := s.st.Status.PreviousSecretExpiresAt
	if p == nil || s.eff.GracePeriod <= 0 || !s.now.Before(p.Time) {
		return time.Time{}, false
	}
	return p.Time, true
}

func (r *ServiceTokenReconciler) renewalDue(s *scope) bool {
	return !s.eff.Forever && schedule.Due(s.now, r.renewalTime(s))
}

// renewalTime is when the current token should next be renewed.
func (r *ServiceTokenReconciler) renewalTime(s *scope) time.Time {
	if s.token == nil {
		return time.Time{}
	}
	at := schedule.RenewalTime(s.token.ExpiresAt, s.eff.RenewBefore)
	// The account's plan may move it earlier: a run of renewals denser than
	// the budget (a thousand tokens created together, say) starts early
	// enough, one budget slot apart, for the budget to cover all of it.
	cost := 1
	if s.eff.RenewalAction == v1alpha1.RenewalRotate {
		cost = 2 // rotate, then refresh
	}
	return r.Renewals.Plan(s.acct.Shared, types.NamespacedName{Namespace: s.st.Namespace, Name: s.st.Name},
		schedule.Renewal{At: at, Deadline: s.token.ExpiresAt, Cost: cost}, renewalInterval(s.acct.Account.Settings))
}

func lastRotation(st *v1alpha1.ServiceToken) time.Time {
	if st.Status.LastRotationTime == nil {
		return time.Time{}
	}
	return st.Status.LastRotationTime.Time
}

// recordSchedule writes expiry and the next renewal into status.
func (r *ServiceTokenReconciler) recordSchedule(s *scope) {
	st := s.st
	st.Status.ExpiresAt, st.Status.RenewalTime = nil, nil
	if s.token == nil {
		return
	}
	if !s.token.ExpiresAt.IsZero() {
		st.Status.ExpiresAt = statusTime(s.token.ExpiresAt)
	}
	var next []time.Time
	if !s.eff.Forever {
		next = append(next, r.renewalTime(s))
	} else {
		r.Renewals.Remove(types.NamespacedName{Namespace: st.Namespace, Name: st.Name})
	}
	next = append(next, schedule.NextRotation(lastRotation(st), s.eff.RotateEvery))
	if !s.deferredUntil.IsZero() { // a rotation due now waits for the grace period to end
		next = append(slices.DeleteFunc(next, func(t time.Time) bool { return !t.After(s.now) }), s.deferredUntil)
	}
	if at, _, ok := schedule.Next(s.now, next...); ok {
		st.Status.RenewalTime = statusTime(at)
	}
}

// statusTime is t as the API server stores it: a status time keeps whole
// seconds only, so a time with a fraction would differ from the stored one on
// every reconcile and cost a status patch each time (5,000 patches on a
// restart of 5,000 ServiceTokens, none of them changing anything).
func statusTime(t time.Time) *metav1.Time {
	return &metav1.Time{Time: t.Truncate(time.Second)}
}

// rotate issues a new secret: the rotate endpoint for account tokens, a
// replacement token for zone tokens (Cloudflare has no zone rotate).
func (r *ServiceTokenReconciler) rotate(ctx context.Context, s *scope) error {
	if s.acct.Scope.IsZone() {
		return r.replaceZoneToken(ctx, s)
	}
	id, lost := s.token.ID, s.rotationLost
	op := v1alpha1.PendingOperation{Type: v1alpha1.OperationRotate, TokenID: id, RotateRequest: s.answers}
	if !s.token.UpdatedAt.IsZero() {
		op.TokenUpdatedAt = s.token.UpdatedAt.UTC().Format(time.RFC3339Nano)
	}
	s.progress = v1alpha1.ReasonRotating
	creds, err := r.issue(ctx, s, &op, r.previousGrace(s), func(ctx context.Context, op *v1alpha1.PendingOperation) (cf.Credentials, error) {
		return s.acct.Client.Rotate(ctx, s.acct.Scope.AccountID, id, timeOf(op.PreviousSecretExpiresAt)) // zero revokes at once
	})
	if err != nil {
		return fmt.Errorf("rotating token %s: %w", id, err)
	}
	prev := op.PreviousSecretExpiresAt
	r.stored(s, creds.Token)
	r.rotated(s, op.ID, s.now, prev)
	if lost {
		r.announceLostRotation(s, id)
		s.rotationLost = false
	}
	r.event(s, corev1.EventTypeNormal, "Rotated", "Rotate", "rotated the secret of token %s; the previous secret works until %s",
		id, formatTime(timeOf(prev)))
	return nil
}

// replaceZoneToken rotates a zone token by creating a replacement; the
// replaced token is deleted once its grace period has ended.
func (r *ServiceTokenReconciler) replaceZoneToken(ctx context.Context, s *scope) error {
	st := s.st
	if st.Status.PreviousTokenID != "" { // one replacement at a time
		if err := r.deletePrevious(ctx, s); err != nil {
			return err
		}
	}
	old := st.Status.TokenID
	// Once the Secret holds the replacement, nothing else shows the replaced
	// token is ours (an explicit spec.tokenName has no marker): its proof is
	// kept, written with the intent, for deletePrevious.
	st.Status.PreviousOwnershipProof = ""
	if s.token != nil && s.owns(*s.token) {
		st.Status.PreviousOwnershipProof = s.acct.Client.Vouch(string(st.UID), old)
	}
	spec := cf.TokenSpec{Name: s.markedName(), Duration: s.eff.Duration, Enabled: s.eff.Enabled} // as createToken
	op := v1alpha1.PendingOperation{Type: v1alpha1.OperationReplace, TokenName: spec.Name, TokenID: old, RotateRequest: s.answers}
	s.progress = v1alpha1.ReasonRotating
	creds, err := r.issue(ctx, s, &op, r.previousGrace(s), func(ctx context.Context, _ *v1alpha1.PendingOperation) (cf.Credentials, error) {
		return s.acct.Client.Create(ctx, s.acct.Scope, spec)
	})
	if err != nil {
		return fmt.Errorf("replacing zone token %s: %w", old, err)
	}
	prev := op.PreviousSecretExpiresAt
	st.Status.PreviousTokenID = old
	r.adopt(s, creds.Token)
	r.Inventory.Put(s.acct.Shared, s.acct.Scope, creds.Token)
	r.rotated(s, op.ID, s.now, prev)
	r.event(s, corev1.EventTypeNormal, "Rotated", "Create", "rotated: replacement zone token %s created, credential stored in Secret %s; token %s works until %s",
		creds.ID, s.eff.SecretName, old, formatTime(timeOf(prev)))
	if prev == nil {
		return r.deletePrevious(ctx, s)
	}
	return nil
}

// announceTokenIDChange tells the user that the ServiceToken's token now has
// a new ID: Access policies that name the old token no longer admit the
// new one. Only two things give a ServiceToken a new ID: a recreate, when
// Cloudflare answered 404 for the old token, and a zone token's replacement
// (Cloudflare has no rotate for zone tokens). It runs once the status with
// the new ID is written, so a change settled after a crash is announced
// too, and one whose status write failed is announced when it is retried.
func (r *ServiceTokenReconciler) announceTokenIDChange(s *scope) {
	st := s.st
	old, cur := s.startTokenID, st.Status.TokenID
	if old == "" || cur == "" || old == cur {
		return
	}
	s.startTokenID = cur
	why := "the old token no longer exists in Cloudflare (deleted outside the operator), so a new one was created"
	if st.Status.PreviousTokenID == old {
		why = fmt.Sprintf("the zone token was replaced to rotate its secret; the old token works until %s and is then deleted",
			formatTime(timeOf(st.Status.PreviousSecretExpiresAt)))
	}
	if r.Metrics != nil {
		r.Metrics.RecordTokenIDChange(st.Namespace, st.Name)
	}
	r.event(s, corev1.EventTypeWarning, v1alpha1.ReasonTokenIDChanged, "Replace",
		"token ID changed from %s to %s: %s. Access policies that name the old token must name the new one (see docs/access-policies.md)",
		old, cur, why)
}

// previousGrace is how long the previous secret keeps working after a
// rotation: the grace period, also when recovering a create whose secret
// seemed lost. "Nobody holds it" cannot be proven (the Secret may have held
// it and been deleted since; make chaos found this), and a grace for a
// secret nobody holds costs nothing that revoking a held one would not.
func (r *ServiceTokenReconciler) previousGrace(s *scope) time.Duration {
	return s.eff.GracePeriod
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// refresh renews the token's lifetime: afterwards it expires within a minute
// of now + spec.duration (see renewLifetime).
func (r *ServiceTokenReconciler) refresh(ctx context.Context, s *scope) error {
	t, err := r.renewLifetime(ctx, s)
	if err != nil {
		forgetUpdate(s.st) // a write may have landed: its updated_at is not someone else's
		return fmt.Errorf("refreshing token %s: %w", s.token.ID, err)
	}
	r.stored(s, t)
	s.progress = v1alpha1.ReasonRefreshing
	s.st.Status.LastRefreshTime = &metav1.Time{Time: s.now}
	if r.Metrics != nil {
		r.Metrics.RecordRefresh(s.st.Namespace, s.st.Name)
	}
	r.event(s, corev1.EventTypeNormal, "Refreshed", "Refresh", "refreshed token %s; it now expires %s", t.ID, formatTime(t.ExpiresAt))
	return nil
}

// lifetimeSlack is how far a renewed expiry may be from now + duration.
const lifetimeSlack = time.Minute

// renewLifetime makes the token expire at now + spec.duration, choosing per
// token between Cloudflare's two operations (docs/renewal.md, "Refresh or
// PUT"):
//   - refresh extends by one year, counted from now or from the old expiry
//     (Cloudflare does not say which). It is used first only for one-year
//     account tokens, where it can be exactly right, and its answer is
//     checked: a year counted from the old expiry is corrected by a PUT.
//   - a PUT of the duration "resets the expiration relative to the time of
//     the update": exact for any duration and the only way for zone tokens.
//     Should a PUT not move the expiry (a duration equal to the stored one
//     might not count as a change), an account token is refreshed after
//     all: a longer life than asked beats an expired token, and an event
//     says so.
func (r *ServiceTokenReconciler) renewLifetime(ctx context.Context, s *scope) (cf.Token, error) {
	c, scope, known := s.acct.Client, s.acct.Scope, *s.token
	put := func() (cf.Token, error) {
		t, err := c.Update(ctx, scope, known.ID, cf.TokenSpec{Name: s.eff.TokenName, Duration: s.eff.Duration, Enabled: s.eff.Enabled})
		if err == nil && !t.Knows(cf.FieldExpiresAt) && !s.eff.Forever {
			// As documented: the expiry counts from the update (not the
			// last known expiry, which the update replaced).
			t.ExpiresAt, t.Missing = updateTime(t, s.now).Add(s.eff.DurationValue), t.Missing&^cf.FieldExpiresAt
		}
		return fillBefore(t, known), err
	}
	refresh := func() (cf.Token, error) { return c.Refresh(ctx, scope.AccountID, known.ID) }
	if s.eff.Forever { // nothing expires: refresh only touches updated_at
		if scope.IsZone() {
			return put()
		}
		return refresh()
	}
	want, before := s.now.Add(s.eff.DurationValue), known.ExpiresAt
	refreshed := false
	if !scope.IsZone() && s.eff.DurationValue == refreshYear {
		t, err := refresh()
		if err != nil || (t.Knows(cf.FieldExpiresAt) && near(t.ExpiresAt, want)) {
			return t, err
		}
		known, refreshed = fillBefore(t, known), true
		s.why = "refresh counted the year from the old expiry; setting the lifetime with a PUT"
	}
	t, err := put()
	if err != nil || near(t.ExpiresAt, want) {
		return t, err
	}
	if !refreshed && !scope.IsZone() {
		if t, err = refresh(); err != nil {
			return cf.Token{}, err
		}
		if t = fillBefore(t, known); near(t.ExpiresAt, want) {
			return t, nil
		}
	}
	if !t.ExpiresAt.After(before) {
		// Nothing moved the expiry: retrying (with backoff) is all that is left.
		return cf.Token{}, fmt.Errorf("renewal did not move the expiry of token %s (still %s; wanted %s)",
			known.ID, formatTime(t.ExpiresAt), formatTime(want))
	}
	r.event(s, corev1.EventTypeWarning, "RenewalInexact", "Refresh",
		"Cloudflare did not set the lifetime spec.duration (%s) asks for: token %s now expires %s instead of %s "+
			"(a PUT of the duration did not reset the expiry, so refresh's one year was kept)",
		s.eff.Duration, known.ID, formatTime(t.ExpiresAt), formatTime(want))
	return t, nil
}

// fillBefore is resp with the fields it lacks taken from known, the token
// before the write, except updated_at: the write moved it, so the old one is
// not the token's (rememberUpdate must see it missing).
func fillBefore(resp, known cf.Token) cf.Token {
	t := resp.Fill(known)
	if !resp.Knows(cf.FieldUpdatedAt) {
		t.UpdatedAt, t.Missing = time.Time{}, t.Missing|cf.FieldUpdatedAt
	}
	return t
}

// refreshYear is what Cloudflare's refresh adds ("extend the token's
// lifetime by one year").
const refreshYear = 8760 * time.Hour

func near(a, b time.Time) bool {
	d := a.Sub(b)
	return !a.IsZero() && d < lifetimeSlack && d > -lifetimeSlack
}

// updateTime is when Cloudflare applied an update: its updated_at, or now.
func updateTime(t cf.Token, now time.Time) time.Time {
	if t.Knows(cf.FieldUpdatedAt) {
		return t.UpdatedAt
	}
	return now
}

// cleanupPrevious deletes a replaced zone token once its grace period ended.
func (r *ServiceTokenReconciler) cleanupPrevious(ctx context.Context, s *scope) error {
	st := s.st
	if st.Status.PreviousTokenID == "" {
		return nil
	}
	if st.Status.PreviousSecretExpiresAt != nil && s.now.Before(st.Status.PreviousSecretExpiresAt.Time) {
		return nil // nextAction requeues at the end of the grace period
	}
	return r.deletePrevious(ctx, s)
}

// deletePrevious deletes the replaced zone token now, if this object can
// prove it made it. A token under an explicit spec.tokenName whose
// credential the Secret no longer holds cannot be proven: it is left, and
// an event says so.
func (r *ServiceTokenReconciler) deletePrevious(ctx context.Context, s *scope) error {
	st := s.st
	if err := r.deleteIfOwned(ctx, s, st.Status.PreviousTokenID, "replaced zone token"); err != nil {
		return err
	}
	st.Status.PreviousTokenID, st.Status.PreviousSecretExpiresAt, st.Status.PreviousOwnershipProof = "", nil, ""
	return nil
}

// deleteToken deletes a token; already gone is fine.
func (r *ServiceTokenReconciler) deleteToken(ctx context.Context, s *scope, id string) error {
	err := s.acct.Client.Delete(ctx, s.acct.Scope, id)
	if err != nil && !cf.IsNotFound(err) {
		return fmt.Errorf("deleting token %s: %w", id, err)
	}
	r.Inventory.Remove(s.acct.Shared, s.acct.Scope, id)
	if err == nil {
		r.event(s, corev1.EventTypeNormal, "Deleted", "Delete", "deleted token %s in Cloudflare", id)
	}
	return nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never (revoked at once / no expiry)"
	}
	return t.UTC().Format(time.RFC3339)
}

// event records an event about the ServiceToken. Messages name token IDs,
// never a secret.
func (r *ServiceTokenReconciler) event(s *scope, eventType, reason, action, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(s.st, nil, eventType, reason, action, note, args...)
	}
}
