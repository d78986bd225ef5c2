package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
	"github.com/servicetoken-operator/servicetoken-operator/internal/schedule"
)

// scope carries one reconcile's facts from phase to phase. Phases write the
// object's status fields directly; conditions are computed once, in finish.
type scope struct {
	st   *v1alpha1.ServiceToken
	base *v1alpha1.ServiceToken // what the API server has, for the status patch
	now  time.Time
	// began is when this reconcile began, to the clock's precision (now is
	// whole seconds, as status keeps them).
	began time.Time
	// startTokenID is status.tokenID as read: a different one in the status
	// this reconcile writes is a new token ID (announceTokenIDChange).
	startTokenID string

	eff    v1alpha1.Effective
	acct   *resolved
	view   View
	token  *cf.Token
	creds  *cf.Credentials // a secret obtained in this reconcile: must reach the Secret
	secret *corev1.Secret  // our Secret as observed (nil: none)
	held   storedCredential
	heldOK bool // held is a credential we wrote, unchanged since
	// persist: this reconcile issued a secret or settled an issuance, so its
	// status must be written even when the manager is stopping.
	persist bool
	// rotationLost: a rotate committed at Cloudflare but its secret was lost;
	// the recovery rotation revokes the secret workloads hold.
	rotationLost bool
	why          string // why this reconcile issues a secret, for the log
	answers      string // the rotate request a rotation in this reconcile answers
	// deferredUntil: a rotation waits for the previous secret's grace to end.
	deferredUntil time.Time
	// movedFrom is our Secret under its previous name, when spec.secret.name changed.
	movedFrom *corev1.Secret
	secretOK  bool // it holds the current token's working credential
	// secretUnknown: the token's secret never reached the Secret as far as we
	// know (lost create response); recovery rotates (with the grace period:
	// a Secret deleted since may have held it).
	secretUnknown bool
	// externalRotation: the token's updated_at moved with nothing readable
	// changed, so it may have been rotated elsewhere (noticeExternalChange).
	externalRotation bool
	// adopting: the token was adopted in this reconcile (adoptRequested) and
	// needs a secret of ours.
	adopting bool
	// blocked is a problem a person must fix that leaves the token working
	// (a rename refused for a name conflict): the remaining phases still
	// run, and it is the reconcile's outcome.
	blocked     error
	deleteLimit int32  // failed deletions before the status tells how to release
	progress    string // reason of the work this reconcile did, for Reconciling
	note        string // what that work is waiting for, when it waits
}

func newScope(st *v1alpha1.ServiceToken, now time.Time) *scope {
	return &scope{st: st, base: st.DeepCopy(), now: now.Truncate(time.Second), began: now, startTokenID: st.Status.TokenID}
}

// terminal is a problem only a person can fix: Stalled=True, no retry
// until the object, its account or its Secret change.
func terminal(reason, format string, args ...any) error {
	return &causeError{Reason: reason, Message: fmt.Sprintf(format, args...), Terminal: true}
}

// outcomeKind is what a reconcile does next.
type outcomeKind string

const (
	outcomeOK       outcomeKind = "ok"       // done; requeue at the next scheduled event
	outcomeTerminal outcomeKind = "terminal" // Stalled until a person changes something
	outcomeWait     outcomeKind = "wait"     // look again after a known wait (rate limit, account)
	outcomeRetry    outcomeKind = "retry"    // transient failure: back off
)

// outcome classifies a reconcile's error into what to do next.
type outcome struct {
	kind    outcomeKind
	reason  string
	message string
	after   time.Duration
}

func classify(err error, opts Options, failures int32) outcome {
	if err == nil {
		return outcome{kind: outcomeOK}
	}
	if ae, ok := asCause(err); ok {
		if ae.Terminal {
			return outcome{kind: outcomeTerminal, reason: ae.Reason, message: ae.Message}
		}
		// The account watch wakes us when it changes; the requeue is a safety net.
		return outcome{kind: outcomeWait, reason: ae.Reason, message: ae.Message, after: time.Minute}
	}
	switch cf.KindOf(err) {
	case cf.KindAuth:
		return outcome{kind: outcomeTerminal, reason: v1alpha1.ReasonUnauthorized,
			message: "Cloudflare rejected the account's credentials; fix the credentials Secret: " + err.Error()}
	case cf.KindInvalid:
		return outcome{kind: outcomeTerminal, reason: v1alpha1.ReasonInvalidSpec, message: "Cloudflare rejected the request; fix the spec: " + err.Error()}
	case cf.KindUnreachable:
		return outcome{kind: outcomeTerminal, reason: v1alpha1.ReasonAccountUnreachable,
			message: "Cloudflare cannot reach the account or zone with these credentials; check the account's spec.accountID, spec.zoneID and that the API token covers them: " + err.Error()}
	case cf.KindRateLimited:
		after := cf.RetryAfterOf(err)
		if after <= 0 {
			after = time.Second
		}
		return outcome{kind: outcomeWait, reason: v1alpha1.ReasonRateLimited, message: cf.SteadyText(err), after: after}
	}
	if isConflict(err) {
		return outcome{kind: outcomeWait, reason: v1alpha1.ReasonProgressing, message: "object changed meanwhile; retrying", after: time.Second}
	}
	return outcome{kind: outcomeRetry, reason: v1alpha1.ReasonCloudflareError, message: err.Error(), after: backoff(failures+1, opts)}
}

// Work-queue priorities (controller-runtime's priority queue; new objects
// and watch events have 0, a restart's initial list less): work at a time
// that was set (a renewal, the end of a grace, an object's place in the
// rate limiter's line) goes before work that arrived meanwhile, so a flood
// of new objects cannot keep a renewal waiting past its time.
const priorityScheduled = 10

// stalledRecheck is how often a Stalled object looks again on its own.
const stalledRecheck = 10 * time.Minute

// retryWait is the backoff after failures, shortened as the token's expiry
// nears so that a failing renewal still gets several tries before it.
func (r *ServiceTokenReconciler) retryWait(s *scope, failures int32) time.Duration {
	return schedule.BeforeExpiry(backoff(failures, r.Options), s.now, expiryOf(s.st), time.Second)
}

func expiryOf(st *v1alpha1.ServiceToken) time.Time {
	if st.Status.ExpiresAt == nil {
		return time.Time{}
	}
	return st.Status.ExpiresAt.Time
}

func backoff(failures int32, opts Options) time.Duration {
	o := opts.withDefaults()
	return schedule.Backoff(failures, o.BackoffBase, o.BackoffMax)
}

// finish computes the status from the reconcile's facts and its outcome,
// patches it once, and says when to look again.
func (r *ServiceTokenReconciler) finish(ctx context.Context, s *scope, err error) (ctrl.Result, error) {
	st := s.st
	if s.released() {
		return ctrl.Result{}, nil // finalizer removed: the object is going away
	}
	if s.acct != nil && cf.KindOf(err) == cf.KindAuth {
		r.Accounts.RereadCredentials(s.acct.Account.Key) // they may have been fixed since
	}
	out := classify(err, r.Options, st.Status.FailedAttempts)
	if !st.DeletionTimestamp.IsZero() && out.kind != outcomeOK && !isConflict(err) {
		// Nothing but a retry helps a deletion; counting the failures is what
		// lets the status tell the user how to release the object.
		out.kind, out.after = outcomeRetry, backoff(st.Status.FailedAttempts+1, r.Options)
	}
	result := r.applyOutcome(s, out)
	before := meta.FindStatusCondition(s.base.Status.Conditions, v1alpha1.ConditionReady)
	setConditions(s, out)
	pctx := ctx
	if s.persist {
		// This reconcile issued a secret or settled an issuance: its status
		// is written even while the manager is stopping.
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), IssuanceTimeout)
		defer cancel()
	}
	if perr := r.patchStatus(pctx, s); perr != nil {
		if isConflict(perr) {
			return ctrl.Result{RequeueAfter: time.Second}, nil // read a stale object; look again
		}
		return ctrl.Result{}, perr
	}
	r.announceTokenIDChange(s)
	// A problem a person must fix is also an event, once per new reason, so
	// `kubectl get events` shows it without polling the status.
	if blocked(out) && (before == nil || before.Reason != out.reason) {
		r.event(s, corev1.EventTypeWarning, out.reason, "Reconcile", "%s", out.message)
	}
	if out.reason == v1alpha1.ReasonRateLimited && s.acct != nil {
		if src, ok := r.Accounts.Factory.(cf.LimiterSource); ok {
			if lim := src.Limiter(s.acct.Account.Key); lim != nil {
				ctrl.LoggerFrom(ctx).V(1).Info("waiting for the Cloudflare rate limit", "retryIn", result.RequeueAfter.String(),
					"limiter", lim.State())
			}
		}
	}
	switch out.kind { // an error is logged once, here, at error level
	case outcomeRetry:
		ctrl.LoggerFrom(ctx).Error(errors.New(out.message), "reconcile failed, retrying", "reason", out.reason,
			"failedAttempts", st.Status.FailedAttempts, "retryIn", result.RequeueAfter.String())
	case outcomeTerminal:
		ctrl.LoggerFrom(ctx).Error(errors.New(out.message), "reconcile stopped until a person changes the object, its account or a Secret",
			"reason", out.reason)
	}
	return result, nil
}

// blocked reports an outcome that waits for a person: a terminal error, or
// an account that is missing or not usable.
func blocked(out outcome) bool {
	return out.kind == outcomeTerminal || (out.kind == outcomeWait &&
		(out.reason == v1alpha1.ReasonAccountNotFound || out.reason == v1alpha1.ReasonAccountNotReady))
}

// applyOutcome updates the failure bookkeeping and computes the requeue.
func (r *ServiceTokenReconciler) applyOutcome(s *scope, out outcome) ctrl.Result {
	st := s.st
	switch out.kind {
	case outcomeOK:
		st.Status.FailedAttempts, st.Status.LastFailureTime = 0, nil
		st.Status.ObservedGeneration = st.Generation
		return r.nextAction(s)
	case outcomeTerminal:
		st.Status.FailedAttempts, st.Status.LastFailureTime = 0, nil
		st.Status.ObservedGeneration = st.Generation
		// Changes to the object, its account and its Secret wake it at once;
		// this slow look covers what is not watched (a foreign Secret deleted,
		// namespace labels, an API token fixed while the account stayed Ready).
		return ctrl.Result{RequeueAfter: stalledRecheck}
	case outcomeWait:
		if out.reason == v1alpha1.ReasonRateLimited {
			// Told to come back at its place in the credentials' line.
			return ctrl.Result{RequeueAfter: out.after, Priority: new(priorityScheduled)}
		}
		return ctrl.Result{RequeueAfter: out.after}
	default: // retry
		st.Status.ObservedGeneration = st.Generation // acted on, still working (Reconciling=True)
		st.Status.FailedAttempts++
		st.Status.LastFailureTime = &metav1.Time{Time: s.now}
		return ctrl.Result{RequeueAfter: schedule.BeforeExpiry(out.after, s.now, expiryOf(st), time.Second)}
	}
}

// nextAction requeues at the earliest scheduled event: renewal, routine
// rotation, or the end of a grace period. Never a periodic poll.
func (r *ServiceTokenReconciler) nextAction(s *scope) ctrl.Result {
	st := s.st
	var times []time.Time
	if st.Status.RenewalTime != nil {
		times = append(times, st.Status.RenewalTime.Time)
	}
	if st.Status.PreviousTokenID != "" && st.Status.PreviousSecretExpiresAt != nil {
		times = append(times, st.Status.PreviousSecretExpiresAt.Time)
	}
	times = append(times, s.deferredUntil)
	_, after, ok := schedule.Next(s.now, times...)
	if !ok {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: after + time.Second, Priority: new(priorityScheduled)}
}

// released reports whether our finalizer is gone from an object being
// deleted: nothing left to record (another party's finalizer may keep the
// object a while longer; it is no longer ours to report on).
func (s *scope) released() bool {
	return !s.st.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(s.st, v1alpha1.Finalizer)
}

// patchStatus writes the status once, as a merge patch against what we read.
// The optimistic lock turns a stale cache read into a conflict and a quick
// retry, instead of a status mixed from two reconciles, or a Cloudflare write
// decided on old facts (every secret-issuing call is preceded by a patch).
// A reconcile that must persist its outcome (s.persist) retries a conflict
// once against a live read, provided only the object's metadata or spec
// changed meanwhile (a label, an edit): its status still holds then.
func (r *ServiceTokenReconciler) patchStatus(ctx context.Context, s *scope) error {
	if equality.Semantic.DeepEqual(s.base.Status, s.st.Status) {
		return nil // nothing changed: a restart of N Ready objects writes nothing
	}
	err := r.Status().Patch(ctx, s.st, client.MergeFromWithOptions(s.base, client.MergeFromWithOptimisticLock{}))
	if isConflict(err) && s.persist {
		live := &v1alpha1.ServiceToken{}
		if gerr := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s.st), live); gerr != nil || !equality.Semantic.DeepEqual(live.Status, s.base.Status) {
			return err
		}
		next := live.DeepCopy()
		next.Status = *s.st.Status.DeepCopy()
		s.base, *s.st = live, *next
		err = r.Status().Patch(ctx, s.st, client.MergeFromWithOptions(s.base, client.MergeFromWithOptimisticLock{}))
	}
	if err != nil {
		return client.IgnoreNotFound(err)
	}
	s.base = s.st.DeepCopy()
	waitForCache(ctx, r.Client, s.st)
	return nil
}
