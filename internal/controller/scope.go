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

	eff    v1alpha1.Effective
	acct   *resolved
	view   View
	token  *cf.Token
	creds  *cf.Credentials // a secret obtained in this reconcile: must reach the Secret
	secret *corev1.Secret  // our Secret as observed (nil: none)
	// movedFrom is our Secret under its previous name, when spec.secret.name changed.
	movedFrom *corev1.Secret
	secretOK  bool // it holds the current token's working credential
	// secretUnknown: nobody holds the token's secret (lost create response), so
	// recovery rotates without a grace period.
	secretUnknown bool
	deleteLimit   int32  // failed deletions before the status tells how to release
	progress      string // reason of the work this reconcile did, for Reconciling
}

func newScope(st *v1alpha1.ServiceToken, now time.Time) *scope {
	return &scope{st: st, base: st.DeepCopy(), now: now.Truncate(time.Second)}
}

func (s *scope) ref() string { return s.st.Namespace + "/" + s.st.Name }

// terminalError is a problem only a person can fix: Stalled=True, no retry
// until the object, its account or its Secret change.
type terminalError struct {
	Reason  string
	Message string
}

func (e *terminalError) Error() string { return e.Message }

func terminal(reason, format string, args ...any) error {
	return &terminalError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// outcome classifies a reconcile's error into what to do next.
type outcome struct {
	kind    string // "ok", "terminal", "wait", "retry"
	reason  string
	message string
	after   time.Duration
}

func classify(err error, opts Options, failures int32) outcome {
	if err == nil {
		return outcome{kind: "ok"}
	}
	var te *terminalError
	if errors.As(err, &te) {
		return outcome{kind: "terminal", reason: te.Reason, message: te.Message}
	}
	if ae, ok := asAccountError(err); ok {
		if ae.Terminal {
			return outcome{kind: "terminal", reason: ae.Reason, message: ae.Message}
		}
		// The account watch wakes us when it changes; the requeue is a safety net.
		return outcome{kind: "wait", reason: ae.Reason, message: ae.Message, after: time.Minute}
	}
	switch cf.KindOf(err) {
	case cf.KindAuth:
		return outcome{kind: "terminal", reason: v1alpha1.ReasonUnauthorized,
			message: "Cloudflare rejected the account's credentials; fix the credentials Secret: " + err.Error()}
	case cf.KindInvalid:
		return outcome{kind: "terminal", reason: v1alpha1.ReasonInvalidSpec, message: "Cloudflare rejected the request; fix the spec: " + err.Error()}
	case cf.KindRateLimited:
		after := cf.RetryAfterOf(err)
		if after <= 0 {
			after = time.Second
		}
		return outcome{kind: "wait", reason: v1alpha1.ReasonRateLimited, message: err.Error(), after: after}
	}
	if isConflict(err) {
		return outcome{kind: "wait", reason: v1alpha1.ReasonProgressing, message: "object changed meanwhile; retrying", after: time.Second}
	}
	return outcome{kind: "retry", reason: v1alpha1.ReasonCloudflareError, message: err.Error(), after: backoff(failures+1, opts)}
}

// stalledRecheck is how often a Stalled object looks again on its own.
const stalledRecheck = 10 * time.Minute

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
	if !st.DeletionTimestamp.IsZero() && out.kind != "ok" {
		// Nothing but a retry helps a deletion; counting the failures is what
		// lets the status tell the user how to release the object.
		out.kind, out.after = "retry", backoff(st.Status.FailedAttempts+1, r.Options)
	}
	result := r.applyOutcome(s, out)
	before := meta.FindStatusCondition(s.base.Status.Conditions, v1alpha1.ConditionReady)
	setConditions(s, out)
	if perr := r.patchStatus(ctx, s); perr != nil {
		if isConflict(perr) {
			return ctrl.Result{RequeueAfter: time.Second}, nil // read a stale object; look again
		}
		return ctrl.Result{}, perr
	}
	// A problem a person must fix is also an event, once per new reason, so
	// `kubectl get events` shows it without polling the status.
	if blocked(out) && (before == nil || before.Reason != out.reason) {
		r.event(s, corev1.EventTypeWarning, out.reason, "Reconcile", "%s", out.message)
	}
	if out.kind == "retry" {
		ctrl.LoggerFrom(ctx).Info("reconcile failed, retrying", "reason", out.reason, "error", out.message,
			"failedAttempts", st.Status.FailedAttempts, "retryIn", result.RequeueAfter.String())
	}
	return result, nil
}

// blocked reports an outcome that waits for a person: a terminal error, or
// an account that is missing or not usable.
func blocked(out outcome) bool {
	return out.kind == "terminal" || (out.kind == "wait" &&
		(out.reason == v1alpha1.ReasonAccountNotFound || out.reason == v1alpha1.ReasonAccountNotReady))
}

// applyOutcome updates the failure bookkeeping and computes the requeue.
func (r *ServiceTokenReconciler) applyOutcome(s *scope, out outcome) ctrl.Result {
	st := s.st
	switch out.kind {
	case "ok":
		st.Status.FailedAttempts, st.Status.LastFailureTime = 0, nil
		st.Status.ObservedGeneration = st.Generation
		return r.nextAction(s)
	case "terminal":
		st.Status.FailedAttempts, st.Status.LastFailureTime = 0, nil
		st.Status.ObservedGeneration = st.Generation
		// Changes to the object, its account and its Secret wake it at once;
		// this slow look covers what is not watched (a foreign Secret deleted,
		// namespace labels, an API token fixed while the account stayed Ready).
		return ctrl.Result{RequeueAfter: stalledRecheck}
	case "wait":
		return ctrl.Result{RequeueAfter: out.after}
	default: // retry
		st.Status.ObservedGeneration = st.Generation // acted on, still working (Reconciling=True)
		st.Status.FailedAttempts++
		st.Status.LastFailureTime = &metav1.Time{Time: s.now}
		return ctrl.Result{RequeueAfter: out.after}
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
	_, after, ok := schedule.Next(s.now, times...)
	if !ok {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: after + time.Second}
}

// setConditions is the one place the kstatus conditions are computed.
func setConditions(s *scope, out outcome) {
	st := s.st
	gen := st.Generation
	healthy := s.token != nil && s.secretOK && !expired(s.token, s.now)
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Status.Conditions, metav1.Condition{Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
	}
	if !st.DeletionTimestamp.IsZero() {
		reason := v1alpha1.ReasonDeleting
		if out.kind != "ok" && st.Status.FailedAttempts >= s.deleteLimit {
			reason = v1alpha1.ReasonDeletionBlocked
		}
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, deletingMessage(s, out))
		set(v1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, deletingMessage(s, out))
		set(v1alpha1.ConditionStalled, metav1.ConditionFalse, v1alpha1.ReasonDeleting, "")
		return
	}
	switch {
	case out.kind == "terminal":
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, out.reason, out.message)
		set(v1alpha1.ConditionStalled, metav1.ConditionTrue, out.reason, out.message)
		set(v1alpha1.ConditionReconciling, metav1.ConditionFalse, out.reason, "")
		return
	case out.kind == "ok" && healthy:
		msg := fmt.Sprintf("Secret %s holds a working credential for token %s", st.Status.SecretName, s.token.ID)
		if !s.eff.Enabled {
			msg += " (token disabled by spec.enabled)"
		}
		set(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady, msg)
		set(v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonReady, "")
	default:
		reason, msg := out.reason, out.message
		if out.kind == "ok" {
			reason, msg = s.progressReason(), "work in progress"
		}
		readyStatus := metav1.ConditionFalse
		if healthy { // still a working credential while we wait or retry
			readyStatus, msg = metav1.ConditionTrue, "credential works; "+msg
		}
		set(v1alpha1.ConditionReady, readyStatus, reason, msg)
		set(v1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, msg)
	}
	set(v1alpha1.ConditionStalled, metav1.ConditionFalse, v1alpha1.ReasonReady, "")
}

func (s *scope) progressReason() string {
	if s.progress != "" {
		return s.progress
	}
	return v1alpha1.ReasonProgressing
}

func deletingMessage(s *scope, out outcome) string {
	if out.kind == "ok" {
		return "deleting the Cloudflare token"
	}
	msg := out.message
	if s.st.Status.FailedAttempts >= s.deleteLimit {
		msg += fmt.Sprintf("; to release this object without deleting the Cloudflare token, set the annotation %s=true",
			v1alpha1.AnnotationForceDelete)
	}
	return msg
}

func expired(t *cf.Token, now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// released reports whether the finalizer is gone (nothing left to record).
func (s *scope) released() bool {
	return !s.st.DeletionTimestamp.IsZero() && len(s.st.Finalizers) == 0
}

// patchStatus writes the status once, as a merge patch against what we read.
// The optimistic lock turns a stale cache read into a conflict and a quick
// retry, instead of a status mixed from two reconciles, or a Cloudflare write
// decided on old facts (every secret-issuing call is preceded by a patch).
func (r *ServiceTokenReconciler) patchStatus(ctx context.Context, s *scope) error {
	if equality.Semantic.DeepEqual(s.base.Status, s.st.Status) {
		return nil // nothing changed: a restart of N Ready objects writes nothing
	}
	patch := client.MergeFromWithOptions(s.base, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, s.st, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	s.base = s.st.DeepCopy()
	waitForCache(ctx, r.Client, s.st)
	return nil
}

// recordIntent persists a pending operation before the Cloudflare call that
// returns a secret: after a crash or a lost response the next reconcile knows
// to look for the outcome. The one status write outside finish, on purpose.
func (r *ServiceTokenReconciler) recordIntent(ctx context.Context, s *scope, op v1alpha1.PendingOperation) error {
	op.StartedAt = metav1.Time{Time: s.now}
	s.st.Status.PendingOperation = &op
	if err := r.patchStatus(ctx, s); err != nil {
		return fmt.Errorf("recording pending %s: %w", op.Type, err)
	}
	return nil
}
