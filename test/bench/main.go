// Command bench measures the operator's economy against its physical limit,
// the Cloudflare API budget (see docs/performance.md). It starts a real
// kube-apiserver + etcd, three Cloudflare simulators and the manager as a
// separate process, runs the six scenarios of the performance issue, prints a
// markdown table and writes the same figures as JSON to --out.
//
//	go run ./test/bench                     # the scaled default (< 15 min on 2 cores)
//	go run ./test/bench --rate 1200/5m ...  # full size: see docs/performance.md
//
// The benchmark never prints a client secret: it reads the simulator's oracle
// only to learn token IDs and expiries.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

type config struct {
	out, only, workDir, managerArgs           string
	rate, bulkRate                            string
	coldN, steadyN, latencyN, unrelatedN      int
	sharedN                                   int
	unrelatedSize                             int
	outsideFraction                           float64
	scale                                     []int
	driftPeriod, waveBefore, waveSpan, settle time.Duration
	scrapeEvery                               time.Duration
	overlap                                   bool
}

// Result is one scenario's row; JSON names match the table's columns.
type Result struct {
	Scenario      string         `json:"scenario"`
	N             int            `json:"n"`
	WallS         float64        `json:"wall_s"`
	LowerBoundS   float64        `json:"lower_bound_s"`
	Ratio         float64        `json:"ratio"`
	CallsByOp     map[string]int `json:"calls_by_op"`
	CallsPerToken float64        `json:"calls_per_token"`
	Status429     int            `json:"429s"`
	PeakRSSMiB    float64        `json:"peak_rss_mib"`
	PeakHeapMiB   float64        `json:"peak_heap_mib"`
	P50ms         float64        `json:"p50_ms"`
	P99ms         float64        `json:"p99_ms"`
	Target        string         `json:"target"`
	Met           bool           `json:"met"`
	Notes         string         `json:"notes"`
	// Extra holds a scenario's own figures (scenario 7's lockouts, scenario
	// 8's points and slopes).
	Extra map[string]any `json:"extra,omitempty"`
}

func main() {
	var c config
	flag.StringVar(&c.out, "out", "bench-results.json", "write the results as JSON to this file")
	flag.StringVar(&c.only, "scenarios", "1,2,3,4,5,6,7,8", "scenarios to run (1 and 4 share their tokens; 2, 3, 5 and 8 share theirs)")
	flag.StringVar(&c.workDir, "work-dir", "", "directory for logs (default: a temporary directory, kept)")
	flag.StringVar(&c.rate, "rate", "120/10s", "the binding budget (simulator and account) of scenarios 1 and 4; Cloudflare's is 1200/5m")
	flag.StringVar(&c.bulkRate, "bulk-rate", "3000/10s", "budget of the account that sets up scenarios 2, 3 and 5 (not what they measure)")
	flag.IntVar(&c.coldN, "cold-n", 2000, "ServiceTokens of scenarios 1 and 4")
	flag.IntVar(&c.steadyN, "steady-n", 5000, "ServiceTokens of scenarios 2, 3 and 5")
	flag.IntVar(&c.latencyN, "latency-n", 100, "ServiceTokens of scenario 6")
	flag.IntVar(&c.sharedN, "shared-n", 0, "ServiceTokens of scenario 7, split evenly over its two accounts (default: --cold-n)")
	flag.BoolVar(&c.overlap, "overlap", true, "run scenario 7 alongside scenario 4's wave (other credential and simulator; same manager) instead of after it, so the default run fits 15 minutes")
	flag.Float64Var(&c.outsideFraction, "outside-fraction", 0.4, "scenario 7: share of the user's budget an outside consumer of the same user spends")
	scale := flag.String("scale", "1000,5000", "scenario 8: ServiceTokens in the steady namespace at which a fresh manager's memory is measured (comma-separated; sizes above --steady-n are reached after scenario 5)")
	flag.IntVar(&c.unrelatedN, "unrelated", 30000, "unrelated Secrets of scenario 5")
	flag.IntVar(&c.unrelatedSize, "unrelated-size", 4096, "bytes of data per unrelated Secret")
	flag.DurationVar(&c.driftPeriod, "drift-period", time.Minute, "the manager's --drift-check-period (default there: 10m)")
	flag.DurationVar(&c.waveBefore, "wave-before", 30*time.Second, "scenario 4: spec.renewal.before of every token")
	flag.DurationVar(&c.waveSpan, "wave-span", time.Minute, "scenario 4: the expiries of all tokens fall within this span")
	flag.DurationVar(&c.settle, "settle", 5*time.Second, "quiet time that counts as settled after a restart")
	flag.DurationVar(&c.scrapeEvery, "scrape-every", 5*time.Second, "how often the manager's metrics are scraped (the chart's ServiceMonitor: every 30s)")
	flag.StringVar(&c.managerArgs, "manager-args", "--kube-api-qps=200 --kube-api-burst=400", "extra manager flags")
	flag.Parse()
	if c.sharedN <= 0 {
		c.sharedN = c.coldN
	}
	var err error
	if c.scale, err = parseSizes(*scale); err != nil {
		fmt.Fprintln(os.Stderr, "bench: --scale:", err)
		os.Exit(2)
	}
	if c.outsideFraction < 0 || c.outsideFraction >= 1 {
		fmt.Fprintln(os.Stderr, "bench: --outside-fraction must be in [0, 1)")
		os.Exit(2)
	}
	crlog.SetLogger(logr.Discard()) // the benchmark's own client logs nothing worth reading
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	c          config
	cp         *harness.ControlPlane
	k8s        client.Client
	managerBin string
	sims       map[string]*harness.Sim // "cold", "steady", "latency"
	mgr        *manager
	secretSeen sync.Map // namespace/name -> time first seen
	results    []Result
	log        io.Writer
	accounts   int // account objects created (CloudflareAccount and ClusterCloudflareAccount)
	// steadyCount is how many steady-NNNNN ServiceTokens exist.
	steadyCount int
	ready       readyTracker
	mu          sync.Mutex // guards results
}

func run(c config) error {
	dir := c.workDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "servicetoken-bench-"); err != nil {
			return err
		}
	}
	b := &bench{c: c, sims: map[string]*harness.Sim{}, log: os.Stderr}
	b.logf("work dir %s; building binaries", dir)
	mgrBin, simBin, err := harness.Binaries(dir)
	if err != nil {
		return err
	}
	b.managerBin = mgrBin
	b.logf("starting kube-apiserver and etcd")
	if b.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Dir: dir}); err != nil {
		return err
	}
	defer b.cp.Stop()
	cfg := rest.CopyConfig(b.cp.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	if b.k8s, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return err
	}
	want := func(s string) bool { return slices.Contains(strings.Split(c.only, ","), s) }
	for name, rate := range map[string]string{"cold": c.rate, "steady": c.bulkRate, "latency": "none"} {
		s, err := harness.StartSim(simBin, dir, "--accounts="+accountID, "--rate-limit="+rate, "--seed=1")
		if err != nil {
			return err
		}
		defer s.Stop()
		b.sims[name] = s
		if err := b.account(name, s, rate); err != nil {
			return err
		}
	}
	if want("7") {
		s, err := harness.StartSim(simBin, dir, b.sharedSimArgs()...)
		if err != nil {
			return err
		}
		defer s.Stop()
		b.sims["shared"] = s
		if err := b.sharedAccounts(s); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.watch(ctx, cfg); err != nil {
		return err
	}
	if b.mgr, err = b.startManager(dir, "manager-1"); err != nil {
		return err
	}
	defer func() { b.mgr.stop() }()

	if err := b.accountsReady(); err != nil {
		return err
	}
	steps := []struct {
		on  bool
		run func() error
	}{
		{want("6"), b.latency},
		// 2, 3, 5 and 8 before 1, 4 and 7: they restart the manager, and
		// the wave's short-lived tokens renew while scenario 4 lasts, which
		// would keep a restarted manager busy.
		{want("2") || want("3") || want("5") || want("8"), func() error {
			return b.steadyRestartMemory(dir, want("2") || want("3") || want("5"), want("8"))
		}},
		{want("1") || want("4") || want("7"), func() error {
			return b.coldWaveShared(want("1") || want("4"), want("4"), want("7"), dir)
		}},
	}
	for _, s := range steps {
		if s.on {
			// The JSON is rewritten after every step, so a long run that
			// fails late still leaves its figures (and prints them).
			if err := errors.Join(s.run(), b.save()); err != nil {
				b.report()
				return err
			}
		}
	}
	b.report()
	return nil
}

func (b *bench) logf(format string, args ...any) {
	// The log is a progress display (stderr by default); failing to write it is no reason to stop.
	_, _ = fmt.Fprintf(b.log, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

const accountID = "0123456789abcdef0123456789abcdef"

// account creates the namespace, credentials and CloudflareAccount of one sim.
// credentialsLabel opts a Secret in to its use as account credentials.
var credentialsLabel = map[string]string{v1alpha1.LabelCredentials: "true"}

func (b *bench) account(name string, s *harness.Sim, rate string) error {
	ctx := context.Background()
	ns := "bench-" + name
	if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	// The simulator accepts any credential; this one is not a real secret.
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf-credentials", Labels: credentialsLabel},
		StringData: map[string]string{v1alpha1.DefaultAPITokenKey: "bench-" + name}}
	if err := b.k8s.Create(ctx, creds); err != nil {
		return err
	}
	acct := &v1alpha1.CloudflareAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf"}}
	acct.Spec.AccountID, acct.Spec.APIURL = accountID, s.APIURL()
	acct.Spec.CredentialsRef.Name = "cf-credentials"
	acct.Spec.RateLimit = rateLimit(rate)
	b.accounts++
	return b.k8s.Create(ctx, acct)
}

// rateLimit is an account's spec.rateLimit for a budget such as 120/10s;
// "none" is the largest budget the API allows.
func rateLimit(rate string) *v1alpha1.RateLimit {
	if n, period, ok := parseRate(rate); ok {
		req := int32(n)
		return &v1alpha1.RateLimit{Requests: &req, Period: period.String()}
	}
	req := int32(100000)
	return &v1alpha1.RateLimit{Requests: &req, Period: "1s"}
}

// accountsReady waits until the manager has verified every account.
func (b *bench) accountsReady() error {
	return harness.WaitFor(2*time.Minute, func() bool {
		list := &v1alpha1.CloudflareAccountList{}
		clusterList := &v1alpha1.ClusterCloudflareAccountList{}
		if b.k8s.List(context.Background(), list) != nil || b.k8s.List(context.Background(), clusterList) != nil {
			return false
		}
		ready := 0
		for _, a := range list.Items {
			if meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		for _, a := range clusterList.Items {
			if meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		return ready == b.accounts
	})
}

func parseRate(s string) (int, time.Duration, bool) {
	n, p, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, false
	}
	requests, err1 := strconv.Atoi(n)
	period, err2 := time.ParseDuration(p)
	return requests, period, err1 == nil && err2 == nil && requests > 0 && period > 0
}

// watch records when each managed Secret first appears (scenario 6) and
// when each ServiceToken is first seen Ready (from watch events: no polling
// of thousands of objects, which would take CPU from what is measured).
func (b *bench) watch(ctx context.Context, cfg *rest.Config) error {
	sel := labels.SelectorFromSet(labels.Set{v1alpha1.LabelManaged: "true"})
	c, err := cache.New(cfg, cache.Options{Scheme: testenv.Scheme(),
		ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {Label: sel}}})
	if err != nil {
		return err
	}
	inf, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return err
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: func(o any) {
		if s, ok := o.(*corev1.Secret); ok {
			b.secretSeen.LoadOrStore(s.Namespace+"/"+s.Name, time.Now())
		}
	}})
	if err != nil {
		return err
	}
	b.ready = readyTracker{seen: map[string]time.Time{}, byNS: map[string]int{}}
	stInf, err := c.GetInformer(ctx, &v1alpha1.ServiceToken{})
	if err != nil {
		return err
	}
	_, err = stInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    b.ready.observe,
		UpdateFunc: func(_, o any) { b.ready.observe(o) },
	})
	if err != nil {
		return err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("bench cache did not sync")
	}
	return nil
}

// readyTracker keeps when each ServiceToken was first seen Ready.
type readyTracker struct {
	mu   sync.Mutex
	seen map[string]time.Time // namespace/name
	byNS map[string]int
}

func (r *readyTracker) observe(o any) {
	st, ok := o.(*v1alpha1.ServiceToken)
	if !ok {
		return
	}
	c := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonReady {
		return
	}
	now := time.Now()
	key := st.Namespace + "/" + st.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[key]; !ok {
		r.seen[key] = now
		r.byNS[st.Namespace]++
	}
}

func (r *readyTracker) count(ns string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byNS[ns]
}

// in returns the first-Ready times of the namespace's ServiceTokens.
func (r *readyTracker) in(ns string) map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]time.Time{}
	for k, t := range r.seen {
		if strings.HasPrefix(k, ns+"/") {
			out[k] = t
		}
	}
	return out
}

// ---- the manager process and its memory -------------------------------------

type manager struct {
	proc        *harness.Process
	metricsURL  string
	stopSampler chan struct{}
	started     time.Time

	mu       sync.Mutex
	peakHeap float64
	last     sample
}

// sample is what one scrape of the manager's metrics said.
type sample struct {
	at                      time.Time
	reconciles, depth, heap float64
	ok                      bool
}

func (b *bench) startManager(dir, name string) (*manager, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(port), "--metrics-secure=false",
		"--drift-check-period=" + b.c.driftPeriod.String()}
	sims := make([]*harness.Sim, 0, len(b.sims))
	for _, s := range b.sims {
		sims = append(sims, s)
	}
	args = append(args, harness.AllowFlag(sims...)) // before --manager-args, which may override it
	args = append(args, strings.Fields(b.c.managerArgs)...)
	p, err := harness.StartManager(b.managerBin, b.cp.Kubeconfig, dir, name, args...)
	if err != nil {
		return nil, err
	}
	m := &manager{proc: p, metricsURL: fmt.Sprintf("http://127.0.0.1:%d/metrics", port), stopSampler: make(chan struct{}), started: time.Now()}
	if err := harness.WaitFor(60*time.Second, func() bool { _, err := m.metrics(); return err == nil }); err != nil {
		return nil, fmt.Errorf("%s did not serve metrics: %s", name, tail(p.Output()))
	}
	go m.sample(b.c.scrapeEvery)
	return m, nil
}

// restartManager stops the running manager and starts a fresh one.
func (b *bench) restartManager(dir, name string) error {
	b.mgr.stop()
	m, err := b.startManager(dir, name)
	if err != nil {
		return err
	}
	b.mgr = m
	return nil
}

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}

// sample scrapes the manager's metrics every period and keeps the peak heap
// and the latest reconcile count, queue depth and heap. A scrape is not free
// for the manager (its ServiceToken metrics cover every object): scraping in
// a tight loop would inflate the memory and slow down what is measured, so
// the period stays near what a Prometheus would do (--scrape-every).
func (m *manager) sample(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-m.stopSampler:
			return
		case <-t.C:
		}
		s, err := m.metrics()
		if err != nil {
			continue
		}
		heap, okH := s.value("go_memstats_heap_inuse_bytes", nil)
		n, okN := s.value("controller_runtime_reconcile_total", map[string]string{"controller": "servicetoken"})
		depth, okD := s.value("workqueue_depth", map[string]string{"name": "servicetoken"})
		m.mu.Lock()
		if okH {
			m.peakHeap = math.Max(m.peakHeap, heap)
		}
		m.last = sample{at: time.Now(), reconciles: n, depth: depth, heap: heap, ok: okN && okD && okH}
		m.mu.Unlock()
	}
}

// kubeWrites is how many write requests the manager has sent to the
// Kubernetes API (client-go's rest_client_requests_total), by verb.
func (m *manager) kubeWrites() string {
	s, err := m.metrics()
	if err != nil || s["rest_client_requests_total"] == nil {
		return "? (no rest_client_requests_total)"
	}
	n, by := 0, []string{}
	for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		if v, ok := s.value("rest_client_requests_total", map[string]string{"method": verb}); ok && v > 0 {
			n += int(v)
			by = append(by, fmt.Sprintf("%s %d", verb, int(v)))
		}
	}
	if n == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", n, strings.Join(by, ", "))
}

func (m *manager) latest() sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

func (m *manager) memory() (rssMiB, heapMiB float64) {
	rss, _ := m.proc.PeakRSSBytes()
	m.mu.Lock()
	defer m.mu.Unlock()
	return float64(rss) / (1 << 20), m.peakHeap / (1 << 20)
}

// procMemory is the manager's memory now, from /proc/<pid>/status: peak
// RSS (VmHWM), RSS (VmRSS) and its anonymous and file-backed parts, in MiB.
type procMemory struct{ peakRSS, rss, anon, file float64 }

func (m *manager) procMemory() (procMemory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.proc.Pid()))
	if err != nil {
		return procMemory{}, err
	}
	var pm procMemory
	fields := map[string]*float64{"VmHWM:": &pm.peakRSS, "VmRSS:": &pm.rss, "RssAnon:": &pm.anon, "RssFile:": &pm.file}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && fields[f[0]] != nil {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return procMemory{}, err
			}
			*fields[f[0]] = kb / 1024
		}
	}
	return pm, nil
}

func (m *manager) stop() {
	if m == nil || m.proc.Exited() {
		return
	}
	close(m.stopSampler)
	m.proc.Stop()
}

func (m *manager) metrics() (scrape, error) { return scrapeMetrics(m.metricsURL) }

// settled waits until the manager has reconciled every ServiceToken at
// least once since it started, its queue is empty and stays so.
func (b *bench) settled(m *manager, total int, timeout time.Duration) (time.Duration, error) {
	var quietSince, seen time.Time
	err := harness.WaitFor(timeout, func() bool {
		s := m.latest()
		if s.at.Equal(seen) {
			return false // no new scrape yet
		}
		seen = s.at
		if !s.ok || s.reconciles < float64(total) || s.depth > 0 {
			quietSince = time.Time{}
			return false
		}
		if quietSince.IsZero() {
			quietSince = s.at
		}
		return s.at.Sub(quietSince) >= b.c.settle
	})
	return quietSince.Sub(m.started), err
}

// ---- simulator figures ------------------------------------------------------

type simStats struct {
	ByOp        map[string]int            `json:"by_op"`
	ByStatus    map[string]int            `json:"by_status"`
	RateLimited int                       `json:"rate_limited"`
	Lockouts    int                       `json:"lockouts"`
	ByOpStatus  map[string]map[string]int `json:"by_op_status"`
}

func stats(s *harness.Sim) simStats {
	raw, err := s.Stats()
	var st simStats
	if err == nil {
		j, _ := json.Marshal(raw)
		_ = json.Unmarshal(j, &st)
	}
	return st
}

func resetStats(s *harness.Sim) error {
	resp, err := http.Post(s.URL+"/_sim/reset-stats", "", nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

type simRequest struct {
	Time   time.Time `json:"time"`
	Path   string    `json:"path"`
	Op     string    `json:"op"`
	Status int       `json:"status"`
}

func requests(s *harness.Sim) ([]simRequest, error) {
	resp, err := http.Get(s.URL + "/_sim/requests")
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out []simRequest
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// dumpCalls writes the simulator's request log (time, op, status; no
// paths or credentials) to dir/name, to see how the budget was spent.
func dumpCalls(s *harness.Sim, dir, name string) {
	reqs, err := requests(s)
	if err != nil {
		return
	}
	var out strings.Builder
	out.WriteString("time,op,status\n")
	for _, r := range reqs {
		fmt.Fprintf(&out, "%s,%s,%d\n", r.Time.Format(time.RFC3339Nano), r.Op, r.Status)
	}
	_ = os.WriteFile(filepath.Join(dir, name), []byte(out.String()), 0o600)
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// ---- objects ----------------------------------------------------------------

func serviceToken(ns, name, duration, before string) *v1alpha1.ServiceToken {
	st := &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	st.Spec.AccountRef.Name = "cf"
	st.Spec.Duration = duration
	if before != "" {
		st.Spec.Renewal = &v1alpha1.Renewal{Before: before, Action: v1alpha1.RenewalRefresh}
	}
	return st
}

// createAll creates objects with a few parallel writers, in index order per writer.
func (b *bench) createAll(n int, obj func(i int) client.Object) error {
	return b.createRange(0, n, obj)
}

// createRange creates the objects from (inclusive) to to (exclusive).
func (b *bench) createRange(from, to int, obj func(i int) client.Object) error {
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	next := make(chan int, max(to-from, 0))
	for i := from; i < to; i++ {
		next <- i
	}
	close(next)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := b.k8s.Create(context.Background(), obj(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// readyTimes polls the namespace's ServiceTokens until all n are Ready (or
// timeout) and returns when each was first seen Ready, by name.
func (b *bench) readyTimes(ns string, n int, timeout time.Duration) (map[string]time.Time, error) {
	seen, err := b.readyTimesIn(map[string]int{ns: n}, timeout)
	byName := make(map[string]time.Time, len(seen))
	for k, t := range seen {
		byName[strings.TrimPrefix(k, ns+"/")] = t
	}
	return byName, err
}

// readyTimesIn waits until each namespace holds its number of Ready
// ServiceTokens (or timeout), and returns when each was first seen Ready, by
// namespace/name.
func (b *bench) readyTimesIn(want map[string]int, timeout time.Duration) (map[string]time.Time, error) {
	done := func() bool {
		for ns, n := range want {
			if b.ready.count(ns) < n {
				return false
			}
		}
		return true
	}
	err := harness.WaitFor(timeout, done)
	seen := map[string]time.Time{}
	total, got := 0, 0
	for ns, n := range want {
		maps.Copy(seen, b.ready.in(ns))
		total, got = total+n, got+b.ready.count(ns)
	}
	if err != nil {
		return seen, fmt.Errorf("%d of %d Ready in %v: %w", got, total, slices.Sorted(maps.Keys(want)), err)
	}
	return seen, nil
}

func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return float64(s[max(i, 0)]) / float64(time.Millisecond)
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// ---- scenario 6: latency ------------------------------------------------------

func (b *bench) latency() error {
	n, ns := b.c.latencyN, "bench-latency"
	sim := b.sims["latency"]
	_ = resetStats(sim)
	b.logf("scenario 6: %d ServiceTokens applied one after another", n)
	var lat []time.Duration
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("lat-%04d", i)
		t0 := time.Now()
		if err := b.k8s.Create(context.Background(), serviceToken(ns, name, "", "")); err != nil {
			return err
		}
		var seen time.Time
		err := harness.WaitFor(30*time.Second, func() bool {
			v, ok := b.secretSeen.Load(ns + "/" + name)
			if ok {
				seen = v.(time.Time)
			}
			return ok
		})
		if err != nil {
			return fmt.Errorf("secret of %s: %w", name, err)
		}
		lat = append(lat, seen.Sub(t0))
	}
	st := stats(sim)
	rss, heap := b.mgr.memory()
	p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
	b.addResult(Result{Scenario: "6 latency", N: n, WallS: round(time.Since(start).Seconds(), 1),
		CallsByOp: st.ByOp, CallsPerToken: round(float64(total(st.ByOp))/float64(n), 3), Status429: st.ByStatus["429"],
		PeakRSSMiB: round(rss, 1), PeakHeapMiB: round(heap, 1), P50ms: round(p50, 1), P99ms: round(p99, 1),
		Target: "apply→Secret p50, p99 ≤ 500 ms", Met: p50 <= 500 && p99 <= 500,
		Notes: "sequential applies; account without budget pressure"})
	return nil
}

// ---- scenarios 1 and 4: cold start, then a renewal wave ------------------------

// coldWaveShared runs scenarios 1 and 4, and scenario 7. With --overlap,
// scenario 7 starts when scenario 1 is over and runs while scenario 4's
// wave approaches and passes: they use different credentials (so different
// budgets) and simulators, and running them one after the other would not
// fit the default run in 15 minutes. The manager, its workers and the CPU
// are shared, which can only make either slower.
func (b *bench) coldWaveShared(cold, wave, shared bool, dir string) error {
	if !cold {
		if shared {
			return b.sharedBudget(dir)
		}
		return nil
	}
	var sharedDone chan error
	start7 := func() {
		if shared && b.c.overlap && sharedDone == nil {
			sharedDone = make(chan error, 1)
			go func() { sharedDone <- b.sharedBudget(dir) }()
		}
	}
	err := b.coldStartAndWave(wave, dir, start7)
	if sharedDone != nil {
		return errors.Join(err, <-sharedDone)
	}
	if err == nil && shared {
		err = b.sharedBudget(dir)
	}
	return err
}

// coldStartAndWave runs scenario 1, then (with wave) scenario 4; during is
// called when scenario 1 is over and the wave has not started.
func (b *bench) coldStartAndWave(wave bool, dir string, during func()) error {
	n, ns := b.c.coldN, "bench-cold"
	sim := b.sims["cold"]
	requests, period, _ := parseRate(b.c.rate)
	rate := float64(requests) / period.Seconds() // calls per second
	lower := float64(n) / rate
	// Scenario 4's shape: object i expires at about e0 + i*span/n, where e0 is
	// chosen so that the cold start is over and the whole wave, run at 80% of
	// the budget (the operator's planning share), fits before the last expiry.
	createEst := 1.05*lower + 10
	waveNeed := float64(n) / (0.8 * rate)
	before := b.c.waveBefore.Seconds()
	_ = resetStats(sim)
	start := time.Now()
	eLast := start.Add(time.Duration((createEst + 30 + waveNeed + before) * float64(time.Second)))
	e0 := eLast.Add(-b.c.waveSpan)
	b.logf("scenario 1: %d new ServiceTokens at %s (lower bound %.0fs)", n, b.c.rate, lower)
	applied := make([]time.Time, n)
	err := b.createAll(n, func(i int) client.Object {
		readyAt := start.Add(time.Duration((10 + float64(i)*(createEst-10)/float64(n)) * float64(time.Second)))
		expiry := e0.Add(time.Duration(float64(i) * float64(b.c.waveSpan) / float64(n)))
		duration, renew := "8760h", ""
		if wave {
			duration = fmt.Sprintf("%ds", max(int(expiry.Sub(readyAt).Seconds()), 61)) // the API's minimum is 1m
			renew = b.c.waveBefore.String()
		}
		applied[i] = time.Now()
		return serviceToken(ns, fmt.Sprintf("cold-%05d", i), duration, renew)
	})
	if err != nil {
		return err
	}
	ready, err := b.readyTimes(ns, n, time.Duration(3*lower+120)*time.Second)
	if err != nil {
		return err
	}
	var last time.Time
	var toReady []time.Duration
	for i := range n {
		t := ready[fmt.Sprintf("cold-%05d", i)]
		toReady = append(toReady, t.Sub(applied[i]))
		if t.After(last) {
			last = t
		}
	}
	wall := last.Sub(start).Seconds()
	st := stats(sim)
	rss, heap := b.mgr.memory()
	perToken := float64(total(st.ByOp)) / float64(n)
	b.addResult(Result{Scenario: "1 cold start", N: n, WallS: round(wall, 1), LowerBoundS: round(lower, 1),
		Ratio: round(wall/lower, 3), CallsByOp: st.ByOp, CallsPerToken: round(perToken, 4), Status429: st.ByStatus["429"],
		PeakRSSMiB: round(rss, 1), PeakHeapMiB: round(heap, 1),
		P50ms: round(percentile(toReady, 0.5), 0), P99ms: round(percentile(toReady, 0.99), 0),
		Target: "ratio ≤ 1.10, ≤ 1.05 calls/token, 0 × 429", Met: wall/lower <= 1.10 && perToken <= 1.05 && st.ByStatus["429"] == 0,
		Notes: fmt.Sprintf("budget %s; lower bound = N creates ÷ rate; p50/p99 = apply→Ready", b.c.rate)})
	dumpCalls(sim, dir, "calls-1.csv")
	b.logf("scenario 1: all Ready after %.1fs (ratio %.3f)", wall, wall/lower)
	if !wave {
		return nil
	}
	during()
	return b.renewalWave(n, sim, rate, eLast, dir)
}

func (b *bench) renewalWave(n int, sim *harness.Sim, rate float64, eLast time.Time, dir string) error {
	tokens, err := sim.Tokens()
	if err != nil {
		return err
	}
	// Only IDs and expiries are kept: tokens, which holds secrets, is unused
	// after this loop, so the collector can free it.
	expiry := map[string]time.Time{}
	firstWindow := time.Time{}
	for _, t := range tokens {
		expiry[t.ID] = t.ExpiresAt
		if w := t.ExpiresAt.Add(-b.c.waveBefore); firstWindow.IsZero() || w.Before(firstWindow) {
			firstWindow = w
		}
	}
	_ = resetStats(sim)
	b.logf("scenario 4: %d renewals; windows open from %s, last expiry %s", n, firstWindow.Format("15:04:05"), eLast.Format("15:04:05"))
	refreshed := map[string]time.Time{}
	var allRefreshes map[string][]time.Time // every refresh of each token, for wave.csv
	err = harness.WaitFor(time.Until(eLast)+60*time.Second, func() bool {
		reqs, err := requests(sim)
		if err != nil {
			return false
		}
		allRefreshes = map[string][]time.Time{}
		for _, r := range reqs {
			if id, ok := renewalOf(r); ok {
				if _, ok := refreshed[id]; !ok {
					refreshed[id] = r.Time
				}
				allRefreshes[id] = append(allRefreshes[id], r.Time)
			}
		}
		time.Sleep(time.Second)
		return len(refreshed) >= len(expiry)
	})
	if err != nil {
		b.logf("scenario 4: %d of %d refreshed: %v", len(refreshed), len(expiry), err)
	}
	// Expired: refreshed after its expiry, or never. Out of order: refreshed
	// more than a second before a token that expires earlier.
	type item struct {
		id       string
		exp, ref time.Time
	}
	var items []item
	expired := 0
	var first, last time.Time
	var slack []time.Duration
	for id, exp := range expiry {
		ref, ok := refreshed[id]
		if !ok || ref.After(exp) {
			expired++
		}
		if ok {
			items = append(items, item{id, exp, ref})
			slack = append(slack, exp.Sub(ref))
			if first.IsZero() || ref.Before(first) {
				first = ref
			}
			if ref.After(last) {
				last = ref
			}
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].exp.Before(items[j].exp) })
	outOfOrder, worst := 0, time.Duration(0)
	var latest time.Time
	var csv strings.Builder
	csv.WriteString("token,expires_at,renewed_at,renewals\n")
	for _, it := range items {
		fmt.Fprintf(&csv, "%s,%s,%s,%d\n", it.id, it.exp.Format(time.RFC3339Nano), it.ref.Format(time.RFC3339Nano), len(allRefreshes[it.id]))
		if it.ref.Add(time.Second).Before(latest) {
			outOfOrder++
			worst = max(worst, latest.Sub(it.ref))
		}
		if it.ref.After(latest) {
			latest = it.ref
		}
	}
	// For a closer look at the order: one line per token, in expiry order.
	_ = os.WriteFile(filepath.Join(dir, "wave.csv"), []byte(csv.String()), 0o600)
	dumpCalls(sim, dir, "calls-4.csv")
	st := stats(sim)
	rss, heap := b.mgr.memory()
	lower := float64(n) / rate
	wall := last.Sub(first).Seconds()
	if first.IsZero() {
		first = firstWindow // nothing renewed: no lead to report
	}
	b.addResult(Result{Scenario: "4 renewal wave", N: n, WallS: round(wall, 1), LowerBoundS: round(lower, 1),
		Ratio: round(wall/lower, 3), CallsByOp: st.ByOp, CallsPerToken: round(float64(total(st.ByOp))/float64(n), 4),
		Status429: st.ByStatus["429"], PeakRSSMiB: round(rss, 1), PeakHeapMiB: round(heap, 1),
		P50ms: round(percentile(slack, 0.5), 0), P99ms: round(percentile(slack, 0.01), 0),
		Target: "0 expired, 0 × 429, in expiry order", Met: expired == 0 && st.ByStatus["429"] == 0 && outOfOrder == 0,
		Notes: fmt.Sprintf("expired %d; out of expiry order (>1s) %d, by at most %s; first renewal %.0fs before the first window opened; "+
			"a renewal is a refresh or an update (PUT with the duration: the expiry becomes now + duration); "+
			"wall = first→last renewal, lower bound = N renewals ÷ rate (renewals are planned at 80%% of it); p50/p99 columns = slack before expiry (median, 1st percentile)",
			expired, outOfOrder, worst.Round(10*time.Millisecond), firstWindow.Sub(first).Seconds())})
	b.logf("scenario 4: expired %d, out of order %d, 429s %d", expired, outOfOrder, st.ByStatus["429"])
	return nil
}

// renewalOf returns the token a successful renewal call renewed: a refresh
// (POST …/service_tokens/{id}/refresh), or an update (PUT
// …/service_tokens/{id}), which resets the expiry to now + duration (the
// operator renews with it when the one year a refresh gives is not the
// token's duration).
func renewalOf(r simRequest) (string, bool) {
	if r.Status != http.StatusOK || (r.Op != "refresh" && r.Op != "update") {
		return "", false
	}
	p := strings.TrimSuffix(r.Path, "/refresh")
	return p[strings.LastIndex(p, "/")+1:], true
}

// ---- scenarios 2, 3 and 5 (and 8): steady state, restart, memory --------------

func (b *bench) steadyRestartMemory(dir string, steady, scale bool) error {
	n := b.c.steadyN
	sim := b.sims["steady"]
	var sizes []int
	if scale {
		sizes = b.c.scale
	}
	// Scenario 8 measures a fresh manager at each size on the way up to
	// --steady-n (a size equal to it is scenario 3's restart), and at the
	// larger sizes after scenario 5.
	var points []scalePoint
	for _, size := range sizes {
		if steady && size >= n {
			break
		}
		p, err := b.scalePoint(dir, size)
		if err != nil {
			return err
		}
		points = append(points, p)
	}
	if !steady {
		return b.scaleResult(points)
	}

	if err := b.growSteady(n); err != nil {
		return err
	}
	everyST, err := b.countServiceTokens()
	if err != nil {
		return err
	}
	pages := int(math.Ceil(float64(n) / 1000))

	// Scenario 3: restart.
	versions, err := b.secretVersions()
	if err != nil {
		return err
	}
	b.mgr.stop()
	_ = resetStats(sim)
	b.logf("scenario 3: restarting the manager with %d Ready ServiceTokens", everyST)
	if b.mgr, err = b.startManager(dir, "manager-2"); err != nil {
		return err
	}
	wall, err := b.settled(b.mgr, everyST, 5*time.Minute)
	if err != nil {
		return fmt.Errorf("restart did not settle: %w", err)
	}
	if slices.Contains(sizes, n) {
		p, err := b.measurePoint(n, everyST)
		if err != nil {
			return err
		}
		points = append(points, p)
	}
	st := stats(sim)
	after, err := b.secretVersions()
	if err != nil {
		return err
	}
	changed := 0
	for k, v := range versions {
		if after[k] != v {
			changed++
		}
	}
	writes := total(st.ByOp) - st.ByOp["list"]
	others := "none"
	if writes > 0 { // which calls, for a closer look (token IDs are not secrets)
		if reqs, err := requests(sim); err == nil {
			var calls []string
			for _, r := range reqs {
				if r.Op != "list" {
					calls = append(calls, fmt.Sprintf("%s %s → %d", r.Op, r.Path, r.Status))
				}
			}
			others = strings.Join(calls, "; ")
		}
	}
	k8sWrites := b.mgr.kubeWrites()
	rss0, heap0 := b.mgr.memory()
	mem0 := b.mgr.describeMemory()
	b.addResult(Result{Scenario: "3 restart", N: n, WallS: round(wall.Seconds(), 1), CallsByOp: st.ByOp,
		CallsPerToken: round(float64(total(st.ByOp))/float64(n), 4), Status429: st.ByStatus["429"],
		PeakRSSMiB: round(rss0, 1), PeakHeapMiB: round(heap0, 1),
		Target: fmt.Sprintf("0 writes, reads ≤ %d, 0 Secrets changed", pages), Met: writes == 0 && st.ByOp["list"] <= pages && changed == 0,
		Notes: fmt.Sprintf("%d Secrets changed (of %d); Cloudflare calls other than lists: %s; %s Kubernetes API writes by the manager (POST/PUT/PATCH/DELETE); wall = start → every ServiceToken reconciled and queue quiet %s; %d ServiceTokens in the cluster",
			changed, len(versions), others, k8sWrites, b.c.settle, everyST)})

	// Scenario 2: steady state with the restarted manager, while scenario 5's
	// unrelated Secrets are created (nothing the operator watches).
	_ = resetStats(sim)
	window := 2 * b.c.driftPeriod
	b.logf("scenario 2: watching %s of steady state (drift period %s); creating %d unrelated Secrets meanwhile", window, b.c.driftPeriod, b.c.unrelatedN)
	unrelated := make(chan error, 1)
	go func() { unrelated <- b.createUnrelated() }()
	bursts := b.listBursts(sim, window)
	st = stats(sim)
	calls := total(st.ByOp)
	perPeriod := float64(calls) / math.Max(float64(bursts), 1)
	b.addResult(Result{Scenario: "2 steady state", N: n, WallS: round(window.Seconds(), 1), CallsByOp: st.ByOp,
		CallsPerToken: round(float64(calls)/float64(n), 4), Status429: st.ByStatus["429"],
		Target: fmt.Sprintf("≤ %d calls per drift period", pages), Met: perPeriod <= float64(pages) && bursts > 0,
		Notes: fmt.Sprintf("%.1f calls per drift period (%d drift checks seen in %s)", perPeriod, bursts, window)})
	if err := <-unrelated; err != nil {
		return err
	}

	// Scenario 5: memory with 0 and with the unrelated Secrets.
	b.mgr.stop()
	b.logf("scenario 5: manager with %d unrelated Secrets in the cluster", b.c.unrelatedN)
	if b.mgr, err = b.startManager(dir, "manager-3"); err != nil {
		return err
	}
	if _, err := b.settled(b.mgr, everyST, 5*time.Minute); err != nil {
		return fmt.Errorf("manager-3 did not settle: %w", err)
	}
	rss1, heap1 := b.mgr.memory()
	b.addResult(
		Result{Scenario: "5a memory, 0 unrelated", N: n, PeakRSSMiB: round(rss0, 1), PeakHeapMiB: round(heap0, 1),
			Target: fmt.Sprintf("peak RSS ≤ %d MiB", memoryTargetMiB), Met: rss0 <= memoryTargetMiB,
			Notes: fmt.Sprintf("the restarted manager of scenario 3; %d ServiceTokens and their Secrets in the cluster; %s", everyST, mem0)},
		Result{Scenario: "5b memory, unrelated", N: n, PeakRSSMiB: round(rss1, 1), PeakHeapMiB: round(heap1, 1),
			Target: fmt.Sprintf("peak RSS ≤ %d MiB, unrelated add ≤ 10 MiB", memoryTargetMiB), Met: rss1 <= memoryTargetMiB && rss1-rss0 <= 10,
			Notes: fmt.Sprintf("%d unrelated Secrets of %d bytes; %+.1f MiB RSS, %+.1f MiB heap vs 5a; %s", b.c.unrelatedN, b.c.unrelatedSize, rss1-rss0, heap1-heap0, b.mgr.describeMemory())})

	for _, size := range sizes {
		if size <= n {
			continue
		}
		p, err := b.scalePoint(dir, size)
		if err != nil {
			return err
		}
		points = append(points, p)
	}
	if scale {
		return b.scaleResult(points)
	}
	return nil
}

// memoryTargetMiB is scenario 5's bound on the manager's peak RSS.
const memoryTargetMiB = 100

func (b *bench) secretVersions() (map[string]string, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err := b.k8s.List(context.Background(), list, client.InNamespace("bench-steady"),
		client.MatchingLabels{v1alpha1.LabelManaged: "true"}); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range list.Items {
		out[s.Namespace+"/"+s.Name] = s.ResourceVersion
	}
	return out, nil
}

// listBursts watches the sim's list calls for d and counts the drift checks
// (bursts of list calls more than a second apart).
func (b *bench) listBursts(sim *harness.Sim, d time.Duration) int {
	time.Sleep(d)
	reqs, err := requests(sim)
	if err != nil {
		return 0
	}
	bursts := 0
	var prev time.Time
	for _, r := range reqs {
		if r.Op != "list" {
			continue
		}
		if prev.IsZero() || r.Time.Sub(prev) > time.Second {
			bursts++
		}
		prev = r.Time
	}
	return bursts
}

func (b *bench) createUnrelated() error {
	ctx := context.Background()
	ns := "bench-unrelated"
	if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	data := []byte(strings.Repeat("x", b.c.unrelatedSize))
	return b.createAll(b.c.unrelatedN, func(i int) client.Object {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("unrelated-%05d", i)},
			Data: map[string][]byte{"data": data}}
	})
}

// ---- report -------------------------------------------------------------------

// addResult records rows (scenario 7 may run alongside scenario 4).
func (b *bench) addResult(rs ...Result) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.results = append(b.results, rs...)
}

// save sorts the results by scenario and writes them as JSON to --out.
func (b *bench) save() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	slices.SortFunc(b.results, func(x, y Result) int { return strings.Compare(x.Scenario, y.Scenario) })
	if b.c.out == "" {
		return nil
	}
	j, err := json.MarshalIndent(b.results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Clean(b.c.out), append(j, '\n'), 0o644)
}

// report prints the results as a markdown table, then each row's notes.
func (b *bench) report() {
	fmt.Println()
	fmt.Println("| scenario | N | wall (s) | lower bound (s) | ratio | calls by op | calls/token | 429s | peak RSS (MiB) | peak heap (MiB) | p50 (ms) | p99 (ms) | target | met |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	dash := func(v float64) string {
		if v == 0 {
			return "–"
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	for _, r := range b.results {
		ops := make([]string, 0, len(r.CallsByOp))
		for op, n := range r.CallsByOp {
			ops = append(ops, fmt.Sprintf("%s %d", op, n))
		}
		sort.Strings(ops)
		met := "yes"
		if !r.Met {
			met = "**no**"
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", r.Scenario, r.N, dash(r.WallS),
			dash(r.LowerBoundS), dash(r.Ratio), strings.Join(ops, ", "), dash(r.CallsPerToken), r.Status429,
			dash(r.PeakRSSMiB), dash(r.PeakHeapMiB), dash(r.P50ms), dash(r.P99ms), r.Target, met)
	}
	fmt.Println()
	for _, r := range b.results {
		fmt.Printf("- %s: %s\n", r.Scenario, r.Notes)
	}
}
