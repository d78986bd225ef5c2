package controller

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
)

const (
	testAccountID = "0123456789abcdef0123456789abcdef"
	testZoneID    = "00112233445566778899aabbccddeeff"
	testAPIToken  = "test-api-token-not-a-real-one"
	// testReadOnlyToken may list and get, not write ("Service Tokens Read").
	testReadOnlyToken = "test-read-only-token"
	// testOtherAccountID is a second Cloudflare account the simulator knows.
	testOtherAccountID = "fedcba9876543210fedcba9876543210"
	unreachableURL     = "http://127.0.0.1:1/client/v4"
)

var (
	env       *testenv.Environment
	k8s       client.Client
	clk       *clocktesting.FakeClock
	simulator *sim.Server
	simURL    string
	// allowedSpy is in the operators' --allowed-api-urls, refusedSpy is not.
	allowedSpy, refusedSpy *spy
	nsSeq                  atomic.Int64
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller suite")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	env, err = testenv.Start()
	if err != nil && !testenv.InCI() {
		Skip("API server not available: " + err.Error())
	}
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(env.Config, client.Options{Scheme: testenv.Scheme()})
	Expect(err).NotTo(HaveOccurred())

	clk = clocktesting.NewFakeClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	simulator = sim.New(sim.Options{
		Accounts:  []string{testAccountID, testOtherAccountID},
		Zones:     []string{testZoneID},
		APITokens: []sim.APIToken{{Token: testAPIToken}, {Token: testReadOnlyToken, ReadOnly: true}},
		RateLimit: sim.RateLimit{Requests: -1},
		Clock:     clk,
	})
	srv := httptest.NewServer(simulator)
	DeferCleanup(srv.Close)
	simURL = srv.URL + "/client/v4"
	allowedSpy, refusedSpy = startSpy(), startSpy()
})

// spy is the simulator under another URL, counting the requests it gets.
type spy struct {
	URL      string // API base URL, for spec.apiURL
	requests atomic.Int64
}

func startSpy() *spy {
	s := &spy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		simulator.ServeHTTP(w, r)
	}))
	DeferCleanup(srv.Close)
	s.URL = srv.URL + "/client/v4"
	return s
}

var _ = AfterSuite(func() {
	if env != nil {
		Expect(env.Stop()).To(Succeed())
	}
})

// hooks let a test interrupt the controller right after a Cloudflare call
// succeeded: as if the response was lost, or the process died.
type hooks struct {
	mu          sync.Mutex
	afterCreate func() error
	afterRotate func() error
	// afterUpdate runs once Cloudflare applied an update, in place of its
	// response.
	afterUpdate func() error
	// beforeRotate fails a rotate before it reaches Cloudflare.
	beforeRotate func() error
	// whileRotating runs once Cloudflare committed a rotate, with the
	// call's context, before the response reaches the controller.
	whileRotating func(ctx context.Context) error
	// refreshFailures fails that many lifetime renewals (a refresh, or a PUT
	// carrying a duration) with a transient error.
	refreshFailures int
	// hideFromLists leaves the token with this ID out of every list.
	hideFromLists string
	// getErr, while set, is every GET's answer (the GET is not sent).
	getErr error
	// lean strips every optional field (duration, enabled, expires_at,
	// created_at, updated_at) from every answer, as the client reports an
	// answer that left them out.
	lean bool
}

func (h *hooks) leanAnswers() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lean
}

// strip is t as an answer without its optional fields would read.
func strip(t cf.Token) cf.Token {
	t.Duration, t.Enabled, t.ExpiresAt, t.CreatedAt, t.UpdatedAt = "", true, time.Time{}, time.Time{}, time.Time{}
	t.Missing = cf.FieldDuration | cf.FieldEnabled | cf.FieldExpiresAt | cf.FieldCreatedAt | cf.FieldUpdatedAt
	return t
}

func (c hookedClient) lean(t cf.Token) cf.Token {
	if c.h.leanAnswers() {
		return strip(t)
	}
	return t
}

func take[F any](h *hooks, f *F) F {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn := *f
	var zero F
	*f = zero // each hook fires once
	return fn
}

func (h *hooks) failRefresh() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refreshFailures > 0 {
		h.refreshFailures--
		return true
	}
	return false
}

type hookedClient struct {
	cf.Client
	h *hooks
}

func (c hookedClient) Create(ctx context.Context, s cf.Scope, spec cf.TokenSpec) (cf.Credentials, error) {
	creds, err := c.Client.Create(ctx, s, spec)
	if hook := take(c.h, &c.h.afterCreate); err == nil && hook != nil {
		return cf.Credentials{}, hook()
	}
	creds.Token = c.lean(creds.Token)
	return creds, err
}

func (c hookedClient) Rotate(ctx context.Context, account, id string, prev time.Time) (cf.Credentials, error) {
	if hook := take(c.h, &c.h.beforeRotate); hook != nil {
		return cf.Credentials{}, hook()
	}
	creds, err := c.Client.Rotate(ctx, account, id, prev)
	if hook := take(c.h, &c.h.afterRotate); err == nil && hook != nil {
		return cf.Credentials{}, hook()
	}
	if hook := take(c.h, &c.h.whileRotating); err == nil && hook != nil {
		if herr := hook(ctx); herr != nil {
			return cf.Credentials{}, herr
		}
	}
	creds.Token = c.lean(creds.Token)
	return creds, err
}

func (c hookedClient) List(ctx context.Context, s cf.Scope, opts cf.ListOptions) ([]cf.Token, error) {
	tokens, err := c.Client.List(ctx, s, opts)
	c.h.mu.Lock()
	hide := c.h.hideFromLists
	c.h.mu.Unlock()
	if hide != "" {
		tokens = slices.DeleteFunc(tokens, func(t cf.Token) bool { return t.ID == hide })
	}
	for i := range tokens {
		tokens[i] = c.lean(tokens[i])
	}
	return tokens, err
}

func (c hookedClient) Update(ctx context.Context, s cf.Scope, id string, spec cf.TokenSpec) (cf.Token, error) {
	if spec.Duration != "" && c.h.failRefresh() {
		return cf.Token{}, &cf.Error{Kind: cf.KindTransient, Op: "update", HTTPStatus: 503, Message: "service unavailable (injected by test)"}
	}
	t, err := c.Client.Update(ctx, s, id, spec)
	if hook := take(c.h, &c.h.afterUpdate); err == nil && hook != nil {
		return cf.Token{}, hook()
	}
	return c.lean(t), err
}

func (c hookedClient) Get(ctx context.Context, s cf.Scope, id string) (cf.Token, error) {
	c.h.mu.Lock()
	injected := c.h.getErr
	c.h.mu.Unlock()
	if injected != nil {
		return cf.Token{}, injected
	}
	t, err := c.Client.Get(ctx, s, id)
	return c.lean(t), err
}

func (c hookedClient) Refresh(ctx context.Context, account, id string) (cf.Token, error) {
	if c.h.failRefresh() {
		return cf.Token{}, &cf.Error{Kind: cf.KindTransient, Op: "refresh", HTTPStatus: 503, Message: "service unavailable (injected by test)"}
	}
	t, err := c.Client.Refresh(ctx, account, id)
	return c.lean(t), err
}

// lostResponse is what the client reports when a response never arrived.
func lostResponse() error {
	return &cf.Error{Kind: cf.KindOutcomeUnknown, Op: "call", Message: "connection reset (injected by test)"}
}

// operator is one running manager, like one operator process.
type operator struct {
	cancel   context.CancelFunc
	done     chan struct{}
	hooks    *hooks
	events   *eventLog
	calls    *apiCalls
	counters *testCounters
}

// apiCalls counts what the ServiceToken reconciler asks of the Kubernetes
// API, per object: cache reads of the ServiceToken (one per reconcile) and
// status patches.
type apiCalls struct {
	mu            sync.Mutex
	gets, patches map[client.ObjectKey]int
	// loseStatus, when it returns true for a status about to be written,
	// drops that write (as if the process died just before it).
	loseStatus func(*v1alpha1.ServiceToken) bool
	// beforePatch runs before a patch of a ServiceToken's metadata or spec
	// (a finalizer write), as another party's write landing just then.
	beforePatch func(*v1alpha1.ServiceToken)
}

func (a *apiCalls) count(m map[client.ObjectKey]int, key client.ObjectKey) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m[key]++
}

func (a *apiCalls) get(m map[client.ObjectKey]int, key client.ObjectKey) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return m[key]
}

// noWatch adapts the manager's client to what the interceptor wraps; the
// reconciler never watches through its client.
type noWatch struct{ client.Client }

func (noWatch) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	return nil, fmt.Errorf("watch is not supported here")
}

func (a *apiCalls) intercept(c client.WithWatch) client.WithWatch {
	return interceptor.NewClient(c, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*v1alpha1.ServiceToken); ok {
				a.count(a.gets, key)
			}
			return c.Get(ctx, key, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if st, ok := obj.(*v1alpha1.ServiceToken); ok {
				a.mu.Lock()
				hook := a.beforePatch
				a.mu.Unlock()
				if hook != nil {
					hook(st)
				}
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if st, ok := obj.(*v1alpha1.ServiceToken); ok && sub == "status" {
				a.count(a.patches, client.ObjectKeyFromObject(obj))
				a.mu.Lock()
				lose := a.loseStatus
				a.mu.Unlock()
				if lose != nil && lose(st) {
					return fmt.Errorf("status write lost (injected by test)")
				}
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
}

// startOperator starts a manager watching only namespace ns, with the fake
// clock, talking to the simulator through the real client. setup may change
// the production wiring's options (an install ID, for example).
func startOperator(ns string, opts Options, setup ...func(*SetupOptions)) *operator {
	return startOperatorLogging(ns, logr.Logger{}, opts, setup...)
}

// startOperatorLogging is startOperator with the manager's logger (zero: the
// suite's).
func startOperatorLogging(ns string, log logr.Logger, opts Options, setup ...func(*SetupOptions)) *operator {
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Logger:                  log,
		Scheme:                  testenv.Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		GracefulShutdownTimeout: ptr(5 * time.Second), // an issuance in flight completes on stop
		Controller:              config.Controller{SkipNameValidation: ptr(true)},
		Cache:                   CacheOptions(map[string]cache.Config{ns: {}}),
	})
	Expect(err).NotTo(HaveOccurred())
	h := &hooks{}
	events := &eventLog{}
	if opts.DriftCheckPeriod == 0 {
		opts.DriftCheckPeriod = time.Hour
	}
	if opts.BackoffBase == 0 {
		opts.BackoffBase, opts.BackoffMax = 100*time.Millisecond, 2*time.Second
	}
	calls := &apiCalls{gets: map[client.ObjectKey]int{}, patches: map[client.ObjectKey]int{}}
	counters := &testCounters{}
	// The production wiring (renewal planner, budget admission included); the
	// factory's rate limiter runs on real time, so pauses end.
	so := SetupOptions{
		Clock:            clk,
		Factory:          cf.NewFactory(cf.FactoryOptions{MaxWait: 100 * time.Millisecond}),
		WrapClient:       func(c cf.Client) cf.Client { return hookedClient{Client: c, h: h} },
		WrapKubeClient:   func(c client.Client) client.Client { return calls.intercept(noWatch{c}) },
		Recorder:         events,
		Counters:         counters,
		DriftCheckPeriod: time.Hour,
		Namespaces:       map[string]cache.Config{ns: {}},
		// The simulator, a port nothing listens on (an unreachable API), and
		// the simulator behind a counting spy; not refusedSpy.
		AllowedAPIURLs:     []string{simURL, unreachableURL, allowedSpy.URL},
		CredentialsRecheck: 300 * time.Millisecond,
		ServiceToken:       opts,
	}
	for _, f := range setup {
		f(&so)
	}
	Expect(Setup(mgr, so)).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	op := &operator{cancel: cancel, done: make(chan struct{}), hooks: h, events: events, calls: calls, counters: counters}
	go func() {
		defer GinkgoRecover()
		defer close(op.done)
		// A "crashed" reconcile never returns, so shutdown may report the
		// grace period exceeded; any other error fails the test.
		if err := mgr.Start(ctx); err != nil {
			Expect(err.Error()).To(ContainSubstring("grace period"))
		}
	}()
	return op
}

// withOperator gives every spec of the container a namespace of its own
// (*ns) with the CloudflareAccount "cf" and an operator watching it (*op),
// stopped after the spec: the one *op names then, as a spec may restart it.
func withOperator(ns *string, op **operator, opts Options) {
	BeforeEach(func() {
		*ns = newNamespace(nil)
		Expect(k8s.Create(ctx(), cfAccount(*ns, "cf"))).To(Succeed())
		*op = startOperator(*ns, opts)
		DeferCleanup(func() { (*op).stop() })
	})
}

func (o *operator) stop() {
	o.cancel()
	Eventually(o.done, 10*time.Second).Should(BeClosed())
}

func ptr[T any](v T) *T { return &v }

// testCounters counts what the controller reports to metrics.
type testCounters struct {
	mu                                sync.Mutex
	rotations, refreshes, lostRotates int
	idChanges                         int
}

func (c *testCounters) RecordRotation(string, string) { c.mu.Lock(); c.rotations++; c.mu.Unlock() }
func (c *testCounters) RecordRefresh(string, string)  { c.mu.Lock(); c.refreshes++; c.mu.Unlock() }
func (c *testCounters) RecordLostRotation(string, string) {
	c.mu.Lock()
	c.lostRotates++
	c.mu.Unlock()
}

func (c *testCounters) RecordTokenIDChange(string, string) {
	c.mu.Lock()
	c.idChanges++
	c.mu.Unlock()
}

func (c *testCounters) tokenIDChanges() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.idChanges
}

func (c *testCounters) lostRotations() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lostRotates
}

// newNamespace creates a namespace of its own for one test, with the
// credentials Secret and a Ready CloudflareAccount named "cf".
func newNamespace(labelSet map[string]string) string {
	ns := fmt.Sprintf("t%d", nsSeq.Add(1))
	Expect(k8s.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labelSet}})).To(Succeed())
	Expect(k8s.Create(ctx(), credentialsSecret(ns, "cloudflare-api", testAPIToken))).To(Succeed())
	return ns
}

// credentialsSecret is a credentials Secret that opts in to its use by accounts.
func credentialsSecret(ns, name, token string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: credentialsLabel()},
		StringData: map[string]string{"apiToken": token}}
}

func credentialsLabel() map[string]string {
	return map[string]string{v1alpha1.LabelCredentials: "true"}
}

func cfAccount(ns, name string) *v1alpha1.CloudflareAccount {
	return &v1alpha1.CloudflareAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.CloudflareAccountSpec{
			AccountSettings: v1alpha1.AccountSettings{AccountID: testAccountID, APIURL: simURL},
			CredentialsRef:  v1alpha1.CredentialsReference{Name: "cloudflare-api"},
		},
	}
}

func ctx() context.Context { return context.Background() }
