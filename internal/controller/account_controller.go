package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// AccountReconciler checks an account's credentials and sets its Ready
// condition. It serves both kinds. Validating the credentials is one list of
// the account's tokens, which the Inventory keeps for every ServiceToken of
// the account, so it costs nothing extra.
type AccountReconciler struct {
	client.Client
	Kind      string // KindCloudflareAccount or KindClusterCloudflareAcc
	Accounts  *Accounts
	Inventory *Inventory
	Clock     clock.PassiveClock
	// DriftCheckPeriod bounds how old a token list may be when reused.
	DriftCheckPeriod time.Duration
	// CredentialsRecheck is how often the credentials Secret is read again
	// (it is not cached, so not watched). Default 5m.
	CredentialsRecheck time.Duration
	// Finalizer is this install's account finalizer (AccountFinalizerFor).
	// Default v1alpha1.AccountFinalizer.
	Finalizer string

	mu       sync.Mutex
	verified map[string]string // account key -> fingerprint of the config Cloudflare accepted
}

// Reconcile validates one account.
func (r *AccountReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	acc, err := r.Accounts.get(ctx, r.Kind, req.Namespace, req.Name)
	if apierrors.IsNotFound(err) {
		key := accountKey(r.Kind, req.Namespace, req.Name)
		r.Inventory.Forget(r.Accounts.sharedKey(key)) // others on the same credentials list again
		r.Accounts.Factory.Forget(key)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if done, result, err := r.guardDeletion(ctx, acc); done {
		return result, err
	}
	if err := r.guardCredentials(ctx, acc); err != nil {
		// Not a reason to hold back the account's verdict: the next
		// credentials recheck tries again (RBAC without patch on this
		// Secret never succeeds; docs/security.md).
		ctrl.LoggerFrom(ctx).Info("cannot keep the credentials Secret for the deletion of tokens", "error", err.Error())
	}
	ready, result, err := r.check(ctx, acc)
	if ready == nil { // a transient failure: keep the last verdict, retry
		return result, err
	}
	return result, r.patchStatus(ctx, acc, *ready)
}

// check returns the Ready condition to record, or nil to keep the current one.
func (r *AccountReconciler) check(ctx context.Context, acc *account) (*metav1.Condition, ctrl.Result, error) {
	recheck := ctrl.Result{RequeueAfter: r.CredentialsRecheck}
	if recheck.RequeueAfter <= 0 {
		recheck.RequeueAfter = credentialsRecheck
	}
	cfg, err := r.Accounts.config(ctx, acc)
	if err != nil {
		if ae, ok := asCause(err); ok {
			return notReady(ae.Reason, ae.Message), recheck, nil
		}
		return nil, ctrl.Result{}, err
	}
	oldShared := r.Accounts.sharedKey(acc.Key)
	c, err := r.Accounts.Factory.ClientFor(cfg)
	if err != nil {
		return notReady(v1alpha1.ReasonCredentialsInvalid, err.Error()), recheck, nil
	}
	// Wrapped like every client handed to a controller: the list made here
	// is the inventory's snapshot, and the drift check lists with its client.
	c, _ = r.Accounts.wrap(c, true)
	shared := r.Accounts.sharedKey(acc.Key)
	fp := fingerprint(cfg)
	if old := r.fingerprint(acc.Key); old != "" && old != fp && oldShared != shared {
		// Other credentials may see other tokens. (A process's first check
		// keeps what ServiceTokens listed with these same credentials.)
		r.Inventory.Forget(oldShared)
	}
	notBefore := r.Clock.Now().Add(-r.DriftCheckPeriod)
	if _, err := r.Inventory.Lookup(ctx, c, shared, cf.Scope{AccountID: acc.Settings.AccountID}, notBefore); err != nil {
		switch cf.KindOf(err) {
		case cf.KindAuth:
			return notReady(v1alpha1.ReasonCredentialsInvalid,
				"Cloudflare rejected the credentials (need permission Access: Service Tokens Write): "+err.Error()), recheck, nil
		case cf.KindUnreachable:
			return notReady(v1alpha1.ReasonAccountUnreachable, fmt.Sprintf(
				"Cloudflare cannot route to account %q with these credentials: check spec.accountID and that the API token includes this account: %v",
				acc.Settings.AccountID, err)), recheck, nil
		case cf.KindNotFound, cf.KindInvalid:
			return notReady(v1alpha1.ReasonCredentialsInvalid, "Cloudflare rejected the account: "+err.Error()), recheck, nil
		case cf.KindRateLimited:
			return nil, ctrl.Result{RequeueAfter: cf.RetryAfterOf(err)}, nil
		default:
			if c := meta.FindStatusCondition(acc.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
				// No good verdict to keep (a new account, or one already
				// failing): say why rather than leave Ready unset.
				return notReady(v1alpha1.ReasonCloudflareError, "cannot reach the Cloudflare API: "+err.Error()),
					ctrl.Result{RequeueAfter: 10 * time.Second}, nil
			}
			return nil, ctrl.Result{}, err
		}
	}
	if r.fingerprint(acc.Key) != fp && acc.WriteVerified != acc.CredentialsVersion {
		if cond := r.probeWrite(ctx, c, acc); cond != nil {
			return cond, recheck, nil
		}
	}
	r.setFingerprint(acc.Key, fp)
	return &metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReady,
		Message: "credentials accepted by Cloudflare"}, recheck, nil
}

// probeToken is a token ID that cannot exist (the nil UUID).
const probeToken = "00000000-0000-0000-0000-000000000000"

// probeWrite finds a read-only API token before the first real write fails:
// it refreshes a token that cannot exist. Cloudflare checks permission
// before it looks the token up, so a token with write permission gets 404
// and a read-only one 403. Run once per new set of credentials. Only a
// refusal counts; any other answer proves nothing and is not held against
// the account.
func (r *AccountReconciler) probeWrite(ctx context.Context, c cf.Client, acc *account) *metav1.Condition {
	_, err := c.Refresh(ctx, acc.Settings.AccountID, probeToken)
	if cf.KindOf(err) != cf.KindAuth {
		return nil
	}
	return notReady(v1alpha1.ReasonCredentialsReadOnly,
		"the API token can list service tokens but not change them: a write probe (refresh of token "+probeToken+
			", which cannot exist) was refused; give the token the permission \"Access: Service Tokens Write\": "+err.Error())
}

// guardDeletion keeps an account (and so its cached client) until no
// ServiceToken of this install holds a token through it: their tokens can
// then still be deleted in Cloudflare when a namespace is deleted with
// everything in it. A ServiceToken that never got a token does not hold the
// account. Each install keeps its own finalizer (Finalizer). done says the
// reconcile ends here.
func (r *AccountReconciler) guardDeletion(ctx context.Context, acc *account) (done bool, _ ctrl.Result, _ error) {
	obj := acc.Object
	if obj.GetDeletionTimestamp().IsZero() {
		if err := setAccountFinalizer(ctx, r.Client, obj, r.finalizer(), true); err != nil {
			return true, ctrl.Result{}, fmt.Errorf("adding finalizer %s: %w", r.finalizer(), err)
		}
		return false, ctrl.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(obj, r.finalizer()) && !controllerutil.ContainsFinalizer(obj, v1alpha1.AccountFinalizer) {
		return true, ctrl.Result{}, nil // not held by this install
	}
	users := &v1alpha1.ServiceTokenList{}
	if err := r.List(ctx, users, client.MatchingFields{accountIndex: acc.Key}); err != nil {
		return true, ctrl.Result{}, err
	}
	for i := range users.Items {
		if holdsToken(&users.Items[i]) {
			return true, ctrl.Result{RequeueAfter: 2 * time.Second}, nil // still in use
		}
	}
	if err := r.guardCredentials(ctx, acc); err != nil && !apierrors.IsForbidden(err) {
		return true, ctrl.Result{}, err // the Secret keeps the finalizer while the status names it
	}
	err := setAccountFinalizer(ctx, r.Client, obj, r.finalizer(), false)
	if err != nil && !apierrors.IsNotFound(err) {
		return true, ctrl.Result{}, fmt.Errorf("removing finalizer %s: %w", r.finalizer(), err)
	}
	return true, ctrl.Result{}, nil
}

func (r *AccountReconciler) finalizer() string {
	if r.Finalizer == "" {
		return v1alpha1.AccountFinalizer
	}
	return r.Finalizer
}

func notReady(reason, msg string) *metav1.Condition {
	return &metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg}
}

func (r *AccountReconciler) patchStatus(ctx context.Context, acc *account, ready metav1.Condition) error {
	obj := acc.Object
	base := obj.DeepCopyObject().(client.Object)
	status := accountStatus(obj)
	ready.ObservedGeneration = obj.GetGeneration()
	meta.SetStatusCondition(&status.Conditions, ready)
	stalled := metav1.Condition{Type: v1alpha1.ConditionStalled, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonReady,
		ObservedGeneration: obj.GetGeneration()}
	if ready.Status != metav1.ConditionTrue {
		stalled.Status, stalled.Reason, stalled.Message = metav1.ConditionTrue, ready.Reason, ready.Message
	}
	meta.SetStatusCondition(&status.Conditions, stalled)
	meta.RemoveStatusCondition(&status.Conditions, v1alpha1.ConditionReconciling)
	status.ObservedGeneration = obj.GetGeneration()
	status.WriteAccessVerified = ""
	if ready.Status == metav1.ConditionTrue {
		status.WriteAccessVerified = acc.CredentialsVersion
	}
	return client.IgnoreNotFound(r.Status().Patch(ctx, obj, client.MergeFrom(base)))
}

func accountStatus(obj client.Object) *v1alpha1.AccountStatus {
	switch o := obj.(type) {
	case *v1alpha1.CloudflareAccount:
		return &o.Status
	case *v1alpha1.ClusterCloudflareAccount:
		return &o.Status
	}
	panic("not an account")
}

// fingerprint identifies a config without keeping the credentials themselves.
func fingerprint(cfg cf.AccountConfig) string {
	h := sha256.Sum256([]byte(cfg.BaseURL + "\x00" + cfg.APIToken + "\x00" + cfg.APIKey + "\x00" + cfg.Email))
	return hex.EncodeToString(h[:])
}

func (r *AccountReconciler) fingerprint(key string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.verified[key]
}

func (r *AccountReconciler) setFingerprint(key, fp string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.verified == nil {
		r.verified = map[string]string{}
	}
	r.verified[key] = fp
}

// deletionStarted lets through the update that marks an object for deletion.
var deletionStarted = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	return e.ObjectOld.GetDeletionTimestamp().IsZero() && !e.ObjectNew.GetDeletionTimestamp().IsZero()
}}

// SetupWithManager registers the reconciler for its kind.
func (r *AccountReconciler) SetupWithManager(mgr ctrl.Manager) error {
	var obj client.Object = &v1alpha1.CloudflareAccount{}
	if r.Kind == v1alpha1.KindClusterCloudflareAcc {
		obj = &v1alpha1.ClusterCloudflareAccount{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(r.Kind).
		For(obj, builder.WithPredicates(predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, deletionStarted))).
		Watches(&v1alpha1.ServiceToken{}, handler.EnqueueRequestsFromMapFunc(r.accountOfToken), builder.WithPredicates(credentialsUseChanged)).
		Complete(r)
}
