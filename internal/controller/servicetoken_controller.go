package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// Options tune the ServiceToken controller; zero values take the defaults.
type Options struct {
	// DriftCheckPeriod is how often each account's tokens are listed to find
	// changes made outside the operator. Default 10m.
	DriftCheckPeriod time.Duration
	// BackoffBase and BackoffMax bound the per-object retry backoff. Default 2s and 5m.
	BackoffBase, BackoffMax time.Duration
	// DeleteAttempts is how many failed deletions pass before the operator
	// tells the user how to release the object. Default 5.
	DeleteAttempts int32
	// MaxConcurrentReconciles. Default 4.
	MaxConcurrentReconciles int
	// ClusterName (--cluster-name, a DNS label, default empty) goes into the
	// default token name, "<namespace>/<name>@<cluster>#<uid>", so a person
	// reading the account can tell which cluster a token belongs to.
	ClusterName string
}

func (o Options) withDefaults() Options {
	if o.DriftCheckPeriod <= 0 {
		o.DriftCheckPeriod = 10 * time.Minute
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 2 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.DeleteAttempts <= 0 {
		o.DeleteAttempts = 5
	}
	if o.MaxConcurrentReconciles <= 0 {
		o.MaxConcurrentReconciles = 4
	}
	return o
}

// ServiceTokenReconciler turns a ServiceToken into a live Cloudflare service
// token and a Secret that always holds a working credential.
type ServiceTokenReconciler struct {
	client.Client
	APIReader client.Reader // for Secrets the cache cannot see (not labelled as ours)
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Accounts  *Accounts
	Inventory *Inventory
	Renewals  *Renewals // plans each account's renewals against its budget (nil: each object on its own)
	Metrics   Counters
	Options   Options

	drift chan event.GenericEvent
	due   chan event.GenericEvent // renewals whose planned start came
	seen  sync.Map                // UIDs this process has reconciled: their retries follow RequeueAfter
	// wrote holds, per UID, the updated_at of the last change this process
	// made to the object's token, in case its status write failed after
	// the change (noticeExternalChange must not take it for someone else's).
	wrote sync.Map
}

// Counters receives the renewals the controller makes (for metrics).
type Counters interface {
	RecordRotation(namespace, name string)
	RecordRefresh(namespace, name string)
	RecordLostRotation(namespace, name string)
	RecordTokenIDChange(namespace, name string)
}

// Reconcile: guard clauses, then the named phases of reconcileNormal or
// reconcileDelete; status is computed and patched once, in finish.
func (r *ServiceTokenReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// Calls to Cloudflare made for this object keep its place in its
	// credentials' line when the budget refuses them.
	ctx = cf.WithCaller(ctx, req.String())
	st := &v1alpha1.ServiceToken{}
	if err := r.Get(ctx, req.NamespacedName, st); err != nil {
		if apierrors.IsNotFound(err) {
			r.Renewals.Remove(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := newScope(st, r.Clock.Now())
	s.deleteLimit = r.Options.DeleteAttempts
	if wait, ok := r.backingOff(s); ok {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	if !st.DeletionTimestamp.IsZero() {
		return r.finish(ctx, s, r.reconcileDelete(ctx, s))
	}
	if !controllerutil.ContainsFinalizer(st, v1alpha1.Finalizer) {
		if err := patchFinalizers(ctx, r.Client, st, func() { controllerutil.AddFinalizer(st, v1alpha1.Finalizer) }); err != nil {
			if isConflict(err) { // another party changed the object: read it again
				return ctrl.Result{RequeueAfter: time.Second}, nil
			}
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
		s.base.ObjectMeta = *st.ObjectMeta.DeepCopy()
	}
	return r.finish(ctx, s, r.reconcileNormal(ctx, s))
}

// reconcileNormal runs the phases of a live ServiceToken in order. Each phase
// records what it found in the scope; the first error stops the rest.
func (r *ServiceTokenReconciler) reconcileNormal(ctx context.Context, s *scope) error {
	phases := []func(context.Context, *scope) error{
		r.loadSettings,    // spec with defaults; invalid spec is terminal
		r.resolveAccount,  // account object, permission, client
		r.observeSecret,   // our Secret, a conflicting one, or none
		r.observeToken,    // the Cloudflare token, and any interrupted operation
		r.adoptRequested,  // a token handed over with the adopt-token-id annotation
		r.ensureToken,     // create, recreate or update in place
		r.renew,           // refresh or rotate when due, requested or needed
		r.ensureSecret,    // write the credential and metadata
		r.vouchToken,      // record the proof that the token is this object's
		r.cleanupSecrets,  // Secrets an interrupted move left under an old name
		r.cleanupPrevious, // delete a replaced zone token after its grace period
	}
	for _, phase := range phases {
		if err := phase(ctx, s); err != nil {
			return err
		}
	}
	return s.blocked
}

// backingOff honours the failure backoff persisted in status the first time
// this process sees an object, so a restart does not retry every failing
// object at once. Later retries are timed by RequeueAfter. A spec change skips it.
func (r *ServiceTokenReconciler) backingOff(s *scope) (time.Duration, bool) {
	st := s.st
	if _, seen := r.seen.LoadOrStore(st.UID, struct{}{}); seen {
		return 0, false
	}
	if st.Status.FailedAttempts == 0 || st.Status.LastFailureTime == nil || st.Generation != st.Status.ObservedGeneration ||
		!st.DeletionTimestamp.IsZero() {
		return 0, false
	}
	retryAt := st.Status.LastFailureTime.Add(r.retryWait(s, st.Status.FailedAttempts))
	if wait := retryAt.Sub(s.now); wait > 0 {
		return wait, true
	}
	return 0, false
}

// SetupWithManager wires the controller: ServiceTokens, their Secrets, the
// accounts they use, and drift events from the inventory.
func (r *ServiceTokenReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.Options = r.Options.withDefaults()
	r.drift = make(chan event.GenericEvent, 1024)
	r.due = make(chan event.GenericEvent, 1024)
	ctx := context.Background()
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.ServiceToken{}, accountIndex, func(o client.Object) []string {
		st := o.(*v1alpha1.ServiceToken)
		kind := st.Spec.AccountRef.Kind
		if kind == "" {
			kind = v1alpha1.KindCloudflareAccount
		}
		if kind == v1alpha1.KindClusterCloudflareAcc {
			return []string{accountKey(kind, "", st.Spec.AccountRef.Name)}
		}
		return []string{accountKey(kind, st.Namespace, st.Spec.AccountRef.Name)}
	}); err != nil {
		return err
	}
	// Only Secrets named otherwise than their ServiceToken are indexed: an
	// index entry is a set per owner, twice (namespaced and cluster-wide),
	// about 1 KiB of memory per ServiceToken in the benchmark, for a lookup
	// the usual Secret, named after its ServiceToken, does not need
	// (cleanupSecrets gets that one by name).
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Secret{}, secretOwnerIndex, func(o client.Object) []string {
		if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "ServiceToken" && o.GetName() != ref.Name {
			return []string{string(ref.UID)}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := mgr.Add(&waker{period: r.Options.DriftCheckPeriod, find: r.driftCheck, out: r.drift}); err != nil {
		return err
	}
	if r.Renewals != nil {
		if err := mgr.Add(&waker{period: time.Second, find: func(context.Context) []types.NamespacedName { return r.Renewals.due() }, out: r.due}); err != nil {
			return err
		}
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ServiceToken{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionStarted))).
		Owns(&corev1.Secret{}).
		Watches(&v1alpha1.CloudflareAccount{}, handler.EnqueueRequestsFromMapFunc(r.tokensOfAccount(v1alpha1.KindCloudflareAccount))).
		Watches(&v1alpha1.ClusterCloudflareAccount{}, handler.EnqueueRequestsFromMapFunc(r.tokensOfAccount(v1alpha1.KindClusterCloudflareAcc))).
		WatchesRawSource(source.Channel(r.drift, &handler.EnqueueRequestForObject{})).
		WatchesRawSource(source.Channel(r.due, enqueueWithPriority(priorityScheduled))).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Options.MaxConcurrentReconciles}).
		Complete(r)
}

const (
	accountIndex     = "spec.accountRef.key"
	secretOwnerIndex = "metadata.controller.uid"
)

func (r *ServiceTokenReconciler) tokensOfAccount(kind string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		list := &v1alpha1.ServiceTokenList{}
		if err := r.List(ctx, list, client.MatchingFields{accountIndex: accountKey(kind, o.GetNamespace(), o.GetName())}); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, st := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: st.Namespace, Name: st.Name}})
		}
		return reqs
	}
}

// enqueueWithPriority enqueues generic events' objects with priority p in
// controller-runtime's priority queue (plainly in any other queue).
func enqueueWithPriority(p int) handler.EventHandler {
	return handler.Funcs{GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(e.Object)}
		if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
			pq.AddWithOpts(priorityqueue.AddOpts{Priority: new(p)}, req)
			return
		}
		q.Add(req)
	}}
}

// waker runs find every period and wakes the ServiceTokens it returns. Two
// run: the drift check (one paginated list per account per period, never a
// poll per object) and the renewal plan (tokens whose planned start came).
type waker struct {
	period time.Duration
	find   func(context.Context) []types.NamespacedName
	out    chan<- event.GenericEvent
}

func (w *waker) NeedLeaderElection() bool { return true }

func (w *waker) Start(ctx context.Context) error {
	t := time.NewTicker(w.period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for _, nn := range w.find(ctx) {
				st := &v1alpha1.ServiceToken{}
				st.Namespace, st.Name = nn.Namespace, nn.Name
				select {
				case w.out <- event.GenericEvent{Object: st}:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

// driftCheck lists every known account and returns the owners of tokens
// that changed outside the operator.
func (r *ServiceTokenReconciler) driftCheck(ctx context.Context) []types.NamespacedName {
	changed, err := r.Inventory.DriftCheck(ctx)
	if err != nil {
		ctrl.LoggerFrom(ctx).Info("drift check incomplete", "error", err.Error())
	}
	return changed
}

// isConflict reports an optimistic-concurrency conflict (retry at once).
func isConflict(err error) bool { return apierrors.IsConflict(err) }

// patchFinalizers applies change (adding or removing one of our finalizers)
// to obj with an optimistic lock. A merge patch replaces the whole
// finalizer list: computed from a stale read, it would drop a finalizer
// another party added meanwhile. With the lock a stale read is a conflict
// instead. On failure obj is left as it was read.
func patchFinalizers(ctx context.Context, c client.Writer, obj client.Object, change func()) error {
	before := obj.GetFinalizers()
	base := obj.DeepCopyObject().(client.Object)
	change()
	if err := c.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		obj.SetFinalizers(before)
		return err
	}
	return nil
}
