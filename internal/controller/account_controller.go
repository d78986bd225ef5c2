package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
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
	// CredentialsRecheck is how often the credentials are tried again on
	// Cloudflare (a permission may change there); a change of the Secret is
	// seen at once through CredentialsCache. Default 5m.
	CredentialsRecheck time.Duration
	// CredentialsCache holds the metadata of opted-in credentials Secrets,
	// watched to check an account again when its Secret changes
	// (newCredentialsCache).
	CredentialsCache cache.Cache
	// Finalizer is this install's account finalizer (AccountFinalizerFor).
	// Default v1alpha1.AccountFinalizer.
	Finalizer string

	mu       sync.Mutex
	verified map[string]string       // account key -> fingerprint of the config Cloudflare accepted
	refused  map[string]refusedProbe // account key -> the write probe's refusal of a config
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
		ctrl.LoggerFrom(ctx).Error(err, "cannot keep the credentials Secret for the deletion of tokens")
	}
	var prev *metav1.Condition // a copy: patchStatus changes the conditions in place
	if c := meta.FindStatusCondition(acc.Conditions, v1alpha1.ConditionReady); c != nil {
		prev = c.DeepCopy()
	}
	checkErr := r.check(ctx, acc)
	v := classifyAccount(acc, checkErr, prev)
	if v.Outcome == accountKeep { // the last verdict stands: retry
		if v.RequeueAfter > 0 {
			return ctrl.Result{RequeueAfter: v.RequeueAfter}, nil
		}
		return ctrl.Result{}, fmt.Errorf("rechecking the credentials of %s: %w", acc.Key, checkErr)
	}
	if err := r.patchStatus(ctx, acc, v); err != nil {
		return ctrl.Result{}, err
	}
	r.logVerdict(ctx, v, prev)
	if v.RequeueAfter > 0 {
		return ctrl.Result{RequeueAfter: v.RequeueAfter}, nil
	}
	// The watches on the account and its Secret wake it for a change made
	// here; the recheck catches a change made in Cloudflare (a permission
	// granted to or taken from the API token).
	recheck := r.CredentialsRecheck
	if recheck <= 0 {
		recheck = credentialsRecheck
	}
	return ctrl.Result{RequeueAfter: recheck}, nil
}

// check reads the account's credentials and tries them on Cloudflare: nil
// when they work; classifyAccount tells what an error means.
func (r *AccountReconciler) check(ctx context.Context, acc *account) error {
	cfg, err := r.Accounts.config(ctx, acc)
	if err != nil {
		return err
	}
	oldShared := r.Accounts.sharedKey(acc.Key)
	c, err := r.Accounts.Factory.ClientFor(cfg)
	if err != nil {
		return &causeError{Reason: v1alpha1.ReasonCredentialsInvalid, Terminal: true, Message: err.Error()}
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
		return err
	}
	if r.fingerprint(acc.Key) != fp && acc.WriteVerified != acc.CredentialsVersion {
		// A refusal stands until the credentials change or the next
		// recheck (a permission granted in Cloudflare): every event on the
		// account (a ServiceToken created meanwhile) would otherwise probe
		// again with the same read-only token.
		if err := r.refusal(acc.Key, fp); err != nil {
			return err
		}
		if err := r.probeWrite(ctx, c, acc); err != nil {
			r.setRefusal(acc.Key, fp, err)
			return err
		}
	}
	r.setFingerprint(acc.Key, fp)
	return nil
}

// logVerdict logs a new verdict (not each recheck's): a stalled account at
// error level, one waiting or retrying at info.
func (r *AccountReconciler) logVerdict(ctx context.Context, v accountVerdict, prev *metav1.Condition) {
	if prev != nil && prev.Reason == v.Reason {
		return
	}
	log := ctrl.LoggerFrom(ctx)
	switch v.Outcome {
	case accountReady:
		log.Info("account Ready: credentials accepted by Cloudflare")
	case accountReconciling:
		log.Info("account not Ready yet, retrying", "reason", v.Reason, "message", v.Message)
	case accountStalled:
		log.Error(errors.New(v.Message), "account stalled until its spec, its Secret or its API token is fixed", "reason", v.Reason)
	}
}

// probeToken is a token ID that cannot exist (the nil UUID).
const probeToken = "00000000-0000-0000-0000-000000000000"

// probeWrite finds a read-only API token before the first real write fails:
// it refreshes a token that cannot exist. Cloudflare checks permission
// before it looks the token up, so a token with write permission gets 404
// and a read-only one 403. Run once per new set of credentials. Only a
// refusal counts; any other answer proves nothing and is not held against
// the account.
func (r *AccountReconciler) probeWrite(ctx context.Context, c cf.Client, acc *account) error {
	_, err := c.Refresh(ctx, acc.Settings.AccountID, probeToken)
	if cf.KindOf(err) != cf.KindAuth {
		return nil
	}
	return &causeError{Reason: v1alpha1.ReasonCredentialsReadOnly, Terminal: true, Message: "the API token can list service tokens but not change them: a write probe (refresh of token " + probeToken +
		", which cannot exist) was refused; give the token the permission \"Access: Service Tokens Write\": " + err.Error()}
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

func (r *AccountReconciler) patchStatus(ctx context.Context, acc *account, v accountVerdict) error {
	obj := acc.Object
	base := obj.DeepCopyObject().(client.Object)
	status := accountStatus(obj)
	setAccountConditions(&status.Conditions, obj.GetGeneration(), v)
	status.ObservedGeneration = obj.GetGeneration()
	status.WriteAccessVerified = ""
	if v.Outcome == accountReady {
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

// refusal is the write probe's refusal of the credentials fp, if any.
func (r *AccountReconciler) refusal(key, fp string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.refused[key]; f.fp == fp && r.Clock.Since(f.at) < credentialsRecheck {
		return f.err
	}
	return nil
}

func (r *AccountReconciler) setRefusal(key, fp string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refused == nil {
		r.refused = map[string]refusedProbe{}
	}
	r.refused[key] = refusedProbe{fp: fp, err: err, at: r.Clock.Now()}
}

// refusedProbe is a write probe's refusal of one set of credentials.
type refusedProbe struct {
	fp  string
	err error
	at  time.Time
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
		WatchesRawSource(r.credentialsSecretSource(r.CredentialsCache)).
		Complete(r)
}
