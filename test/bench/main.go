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
	unrelatedSize                             int
	driftPeriod, waveBefore, waveSpan, settle time.Duration
	scrapeEvery                               time.Duration
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
}

func main() {
	var c config
	flag.StringVar(&c.out, "out", "bench-results.json", "write the results as JSON to this file")
	flag.StringVar(&c.only, "scenarios", "1,2,3,4,5,6", "scenarios to run (1 and 4 share their tokens; 2, 3 and 5 share theirs)")
	flag.StringVar(&c.workDir, "work-dir", "", "directory for logs (default: a temporary directory, kept)")
	flag.StringVar(&c.rate, "rate", "120/10s", "the binding budget (simulator and account) of scenarios 1 and 4; Cloudflare's is 1200/5m")
	flag.StringVar(&c.bulkRate, "bulk-rate", "3000/10s", "budget of the account that sets up scenarios 2, 3 and 5 (not what they measure)")
	flag.IntVar(&c.coldN, "cold-n", 2000, "ServiceTokens of scenarios 1 and 4")
	flag.IntVar(&c.steadyN, "steady-n", 5000, "ServiceTokens of scenarios 2, 3 and 5")
	flag.IntVar(&c.latencyN, "latency-n", 100, "ServiceTokens of scenario 6")
	flag.IntVar(&c.unrelatedN, "unrelated", 30000, "unrelated Secrets of scenario 5")
	flag.IntVar(&c.unrelatedSize, "unrelated-size", 4096, "bytes of data per unrelated Secret")
	flag.DurationVar(&c.driftPeriod, "drift-period", time.Minute, "the manager's --drift-check-period (default there: 10m)")
	flag.DurationVar(&c.waveBefore, "wave-before", 30*time.Second, "scenario 4: spec.renewal.before of every token")
	flag.DurationVar(&c.waveSpan, "wave-span", time.Minute, "scenario 4: the expiries of all tokens fall within this span")
	flag.DurationVar(&c.settle, "settle", 5*time.Second, "quiet time that counts as settled after a restart")
	flag.DurationVar(&c.scrapeEvery, "scrape-every", 5*time.Second, "how often the manager's metrics are scraped (the chart's ServiceMonitor: every 30s)")
	flag.StringVar(&c.managerArgs, "manager-args", "--kube-api-qps=200 --kube-api-burst=400", "extra manager flags")
	flag.Parse()
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := b.watchSecrets(ctx, cfg); err != nil {
		return err
	}
	if b.mgr, err = b.startManager(dir, "manager-1"); err != nil {
		return err
	}
	defer func() { b.mgr.stop() }()

	if err := b.accountsReady(); err != nil {
		return err
	}
	want := func(s string) bool { return slices.Contains(strings.Split(c.only, ","), s) }
	steps := []struct {
		on  bool
		run func() error
	}{
		{want("6"), b.latency},
		// 2, 3 and 5 before 1 and 4: the wave's short-lived tokens keep
		// renewing after scenario 4, which would keep a restarted manager busy.
		{want("2") || want("3") || want("5"), func() error { return b.steadyRestartMemory(dir) }},
		{want("1") || want("4"), func() error { return b.coldStartAndWave(want("4"), dir) }},
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
	fmt.Fprintf(b.log, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

const accountID = "0123456789abcdef0123456789abcdef"

// account creates the namespace, credentials and CloudflareAccount of one sim.
func (b *bench) account(name string, s *harness.Sim, rate string) error {
	ctx := context.Background()
	ns := "bench-" + name
	if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	// The simulator accepts any credential; this one is not a real secret.
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf-credentials"},
		StringData: map[string]string{v1alpha1.DefaultAPITokenKey: "bench-" + name}}
	if err := b.k8s.Create(ctx, creds); err != nil {
		return err
	}
	acct := &v1alpha1.CloudflareAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf"}}
	acct.Spec.AccountID, acct.Spec.APIURL = accountID, s.APIURL()
	acct.Spec.CredentialsRef.Name = "cf-credentials"
	if n, period, ok := parseRate(rate); ok {
		req := int32(n)
		acct.Spec.RateLimit = &v1alpha1.RateLimit{Requests: &req, Period: period.String()}
	} else {
		req := int32(100000)
		acct.Spec.RateLimit = &v1alpha1.RateLimit{Requests: &req, Period: "1s"}
	}
	return b.k8s.Create(ctx, acct)
}

// accountsReady waits until the manager has verified every account.
func (b *bench) accountsReady() error {
	return harness.WaitFor(2*time.Minute, func() bool {
		list := &v1alpha1.CloudflareAccountList{}
		if err := b.k8s.List(context.Background(), list); err != nil {
			return false
		}
		for _, a := range list.Items {
			if !meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady) {
				return false
			}
		}
		return len(list.Items) == len(b.sims)
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

// watchSecrets records when each managed Secret first appears (scenario 6).
func (b *bench) watchSecrets(ctx context.Context, cfg *rest.Config) error {
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
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return fmt.Errorf("bench cache did not sync")
	}
	return nil
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
	at                time.Time
	reconciles, depth float64
	ok                bool
}

func (b *bench) startManager(dir, name string) (*manager, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(port), "--metrics-secure=false",
		"--drift-check-period=" + b.c.driftPeriod.String()}
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

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}

// sample scrapes the manager's metrics every period and keeps the peak heap
// and the latest reconcile count and queue depth. A scrape is not free for
// the manager (its ServiceToken metrics cover every object): scraping in a
// tight loop would inflate the memory and slow down what is measured, so the
// period stays near what a Prometheus would do (--scrape-every).
func (m *manager) sample(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-m.stopSampler:
			return
		case <-t.C:
		}
		text, err := m.metrics()
		if err != nil {
			continue
		}
		heap, errH := metricValue(text, "go_memstats_heap_inuse_bytes", "")
		n, errN := metricValue(text, "controller_runtime_reconcile_total", `controller="servicetoken"`)
		depth, errD := metricValue(text, "workqueue_depth", `name="servicetoken"`)
		m.mu.Lock()
		if errH == nil {
			m.peakHeap = math.Max(m.peakHeap, heap)
		}
		m.last = sample{at: time.Now(), reconciles: n, depth: depth, ok: errN == nil && errD == nil}
		m.mu.Unlock()
	}
}

// kubeWrites is how many write requests the manager has sent to the
// Kubernetes API (client-go's rest_client_requests_total), by verb.
func (m *manager) kubeWrites() string {
	text, err := m.metrics()
	if err != nil || !strings.Contains(text, "rest_client_requests_total{") {
		return "? (no rest_client_requests_total)"
	}
	n, by := 0, []string{}
	for _, verb := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		if v, err := metricValue(text, "rest_client_requests_total", `method="`+verb+`"`); err == nil && v > 0 {
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

func (m *manager) stop() {
	if m == nil || m.proc.Exited() {
		return
	}
	close(m.stopSampler)
	m.proc.Stop()
}

func (m *manager) metrics() (string, error) {
	resp, err := http.Get(m.metricsURL)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// metricValue sums the samples of name in a scrape whose labels contain match.
func metricValue(text, name, match string) (float64, error) {
	sum, found := 0.0, false
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		if match != "" && !strings.Contains(line, match) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return 0, fmt.Errorf("no %s", name)
	}
	return sum, nil
}

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
	defer resp.Body.Close()
	var out []simRequest
	return out, json.NewDecoder(resp.Body).Decode(&out)
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
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	next := make(chan int, n)
	for i := range n {
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
// timeout) and returns when each was first seen Ready.
func (b *bench) readyTimes(ns string, n int, timeout time.Duration) (map[string]time.Time, error) {
	seen := map[string]time.Time{}
	err := harness.WaitFor(timeout, func() bool {
		list := &v1alpha1.ServiceTokenList{}
		if err := b.k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			return false
		}
		now := time.Now()
		for _, st := range list.Items {
			c := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady)
			if _, ok := seen[st.Name]; !ok && c != nil && c.Status == metav1.ConditionTrue && c.Reason == v1alpha1.ReasonReady {
				seen[st.Name] = now
			}
		}
		if len(seen) < n {
			time.Sleep(time.Second) // listing N objects is not free on 2 cores: 1s resolution
		}
		return len(seen) >= n
	})
	if err != nil {
		return seen, fmt.Errorf("%d of %d Ready in %s: %w", len(seen), n, ns, err)
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
	b.results = append(b.results, Result{Scenario: "6 latency", N: n, WallS: round(time.Since(start).Seconds(), 1),
		CallsByOp: st.ByOp, CallsPerToken: round(float64(total(st.ByOp))/float64(n), 3), Status429: st.ByStatus["429"],
		PeakRSSMiB: round(rss, 1), PeakHeapMiB: round(heap, 1), P50ms: round(p50, 1), P99ms: round(p99, 1),
		Target: "apply→Secret p50, p99 ≤ 500 ms", Met: p50 <= 500 && p99 <= 500,
		Notes: "sequential applies; account without budget pressure"})
	return nil
}

// ---- scenarios 1 and 4: cold start, then a renewal wave ------------------------

func (b *bench) coldStartAndWave(wave bool, dir string) error {
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
	b.results = append(b.results, Result{Scenario: "1 cold start", N: n, WallS: round(wall, 1), LowerBoundS: round(lower, 1),
		Ratio: round(wall/lower, 3), CallsByOp: st.ByOp, CallsPerToken: round(perToken, 4), Status429: st.ByStatus["429"],
		PeakRSSMiB: round(rss, 1), PeakHeapMiB: round(heap, 1),
		P50ms: round(percentile(toReady, 0.5), 0), P99ms: round(percentile(toReady, 0.99), 0),
		Target: "ratio ≤ 1.10, ≤ 1.05 calls/token, 0 × 429", Met: wall/lower <= 1.10 && perToken <= 1.05 && st.ByStatus["429"] == 0,
		Notes: fmt.Sprintf("budget %s; lower bound = N creates ÷ rate; p50/p99 = apply→Ready", b.c.rate)})
	b.logf("scenario 1: all Ready after %.1fs (ratio %.3f)", wall, wall/lower)
	if !wave {
		return nil
	}
	return b.renewalWave(n, sim, rate, eLast, dir)
}

func (b *bench) renewalWave(n int, sim *harness.Sim, rate float64, eLast time.Time, dir string) error {
	tokens, err := sim.Tokens()
	if err != nil {
		return err
	}
	expiry := map[string]time.Time{}
	firstWindow := time.Time{}
	for _, t := range tokens {
		expiry[t.ID] = t.ExpiresAt
		if w := t.ExpiresAt.Add(-b.c.waveBefore); firstWindow.IsZero() || w.Before(firstWindow) {
			firstWindow = w
		}
	}
	tokens = nil // holds secrets: drop it at once
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
			if r.Op == "refresh" && r.Status == http.StatusOK {
				id := r.Path[strings.LastIndex(strings.TrimSuffix(r.Path, "/refresh"), "/")+1 : len(r.Path)-len("/refresh")]
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
	csv.WriteString("token,expires_at,refreshed_at,refreshes\n")
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
	st := stats(sim)
	rss, heap := b.mgr.memory()
	lower := float64(n) / rate
	wall := last.Sub(first).Seconds()
	b.results = append(b.results, Result{Scenario: "4 renewal wave", N: n, WallS: round(wall, 1), LowerBoundS: round(lower, 1),
		Ratio: round(wall/lower, 3), CallsByOp: st.ByOp, CallsPerToken: round(float64(total(st.ByOp))/float64(n), 4),
		Status429: st.ByStatus["429"], PeakRSSMiB: round(rss, 1), PeakHeapMiB: round(heap, 1),
		P50ms: round(percentile(slack, 0.5), 0), P99ms: round(percentile(slack, 0.01), 0),
		Target: "0 expired, 0 × 429, in expiry order", Met: expired == 0 && st.ByStatus["429"] == 0 && outOfOrder == 0,
		Notes: fmt.Sprintf("expired %d; out of expiry order (>1s) %d, by at most %s; first refresh %.0fs before the first window opened; "+
			"wall = first→last refresh, lower bound = N refreshes ÷ rate (renewals are planned at 80%% of it); p50/p99 columns = slack before expiry (median, 1st percentile)",
			expired, outOfOrder, worst.Round(10*time.Millisecond), firstWindow.Sub(first).Seconds())})
	b.logf("scenario 4: expired %d, out of order %d, 429s %d", expired, outOfOrder, st.ByStatus["429"])
	return nil
}

// ---- scenarios 2, 3 and 5: steady state, restart, memory ----------------------

func (b *bench) steadyRestartMemory(dir string) error {
	n, ns := b.c.steadyN, "bench-steady"
	sim := b.sims["steady"]
	b.logf("setup of scenarios 2, 3, 5: %d ServiceTokens at %s", n, b.c.bulkRate)
	if err := b.createAll(n, func(i int) client.Object {
		return serviceToken(ns, fmt.Sprintf("steady-%05d", i), "", "")
	}); err != nil {
		return err
	}
	if _, err := b.readyTimes(ns, n, 20*time.Minute); err != nil {
		return err
	}
	all := &v1alpha1.ServiceTokenList{}
	if err := b.k8s.List(context.Background(), all); err != nil {
		return err
	}
	everyST := len(all.Items)
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
	k8sWrites := b.mgr.kubeWrites()
	rss0, heap0 := b.mgr.memory()
	b.results = append(b.results, Result{Scenario: "3 restart", N: n, WallS: round(wall.Seconds(), 1), CallsByOp: st.ByOp,
		CallsPerToken: round(float64(total(st.ByOp))/float64(n), 4), Status429: st.ByStatus["429"],
		PeakRSSMiB: round(rss0, 1), PeakHeapMiB: round(heap0, 1),
		Target: fmt.Sprintf("0 writes, reads ≤ %d, 0 Secrets changed", pages), Met: writes == 0 && st.ByOp["list"] <= pages && changed == 0,
		Notes: fmt.Sprintf("%d Secrets changed (of %d); %s Kubernetes API writes by the manager (POST/PUT/PATCH/DELETE); wall = start → every ServiceToken reconciled and queue quiet %s; %d ServiceTokens in the cluster",
			changed, len(versions), k8sWrites, b.c.settle, everyST)})

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
	b.results = append(b.results, Result{Scenario: "2 steady state", N: n, WallS: round(window.Seconds(), 1), CallsByOp: st.ByOp,
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
	b.results = append(b.results,
		Result{Scenario: "5a memory, 0 unrelated", N: n, PeakRSSMiB: round(rss0, 1), PeakHeapMiB: round(heap0, 1),
			Target: "peak RSS ≤ 150 MiB", Met: rss0 <= 150,
			Notes: fmt.Sprintf("the restarted manager of scenario 3; %d ServiceTokens and their Secrets in the cluster", everyST)},
		Result{Scenario: "5b memory, unrelated", N: n, PeakRSSMiB: round(rss1, 1), PeakHeapMiB: round(heap1, 1),
			Target: "peak RSS ≤ 150 MiB, unrelated add ≤ 10 MiB", Met: rss1 <= 150 && rss1-rss0 <= 10,
			Notes: fmt.Sprintf("%d unrelated Secrets of %d bytes; +%.1f MiB RSS, %+.1f MiB heap vs 5a", b.c.unrelatedN, b.c.unrelatedSize, rss1-rss0, heap1-heap0)})
	return nil
}

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

// save sorts the results by scenario and writes them as JSON to --out.
func (b *bench) save() error {
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
