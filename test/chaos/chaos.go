// Package chaos is the soak test of issue 7: the real API server, the
// Cloudflare simulator (cmd/cfsim) and the real manager binary as two
// leader-elected replicas, under churn, injected Cloudflare faults, SIGKILLs
// of the leader, SIGTERM rollouts during issuance and one API server restart.
// When the faults stop it waits for convergence and checks that nothing was
// lost or leaked. Throughout, it samples the Secrets as a workload reads them
// and checks that every secret it was handed keeps working for its grace
// period once replaced (issue 11, continuity.go).
// A second, small cluster shares one Cloudflare account with the first,
// its ServiceTokens named like first-cluster ones, and the simulator's
// request log shows that neither cluster ever writes to the other's tokens
// (issue 13, second.go).
//
// Run it with `make chaos` (the long, default configuration, flags through
// CHAOS_ARGS) or as part of `make test` (TestChaos, a short configuration).
// It never prints a secret: violations name objects and token IDs only.
package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

// Config is one chaos run.
type Config struct {
	Tokens        int           // ServiceTokens kept alive (about; churn deletes and recreates)
	Churn         time.Duration // how long churn, faults and kills last
	Converge      time.Duration // how long to wait for convergence once faults stop
	ChurnInterval time.Duration // mean pause between churn actions
	FaultRate     float64       // probability a Cloudflare request gets a fault
	LatencySpike  time.Duration // delay of the latency fault
	KillMin       time.Duration // the leader is killed a random time in [KillMin, KillMax] after it took the lease
	KillMax       time.Duration
	MinKills      int  // fewer kills than this is a violation (the run did not exercise failover)
	RestartAPI    bool // restart kube-apiserver once, half way through
	// RolloutEvery is the mean pause between SIGTERM rollouts of the leader
	// during an in-flight issuance (0: none); fewer than MinRollouts is a
	// violation.
	RolloutEvery time.Duration
	MinRollouts  int
	// The fault phases: FaultPhase of the general mix, then RefreshFailPhase
	// in which only the calls that renew a lifetime (refresh, update) fail, with probability RefreshFailRate
	// (5xx), and so on. RefreshFailPhase 0 keeps the general mix throughout.
	FaultPhase       time.Duration
	RefreshFailPhase time.Duration
	RefreshFailRate  float64
	DriftPeriod      time.Duration
	// SecondTokens is the size of a second cluster (its own control plane
	// and manager, --cluster-name=second, its own API token) whose
	// ServiceTokens take the names of first-cluster ones in the same
	// Cloudflare account (second.go); 0 switches it off.
	SecondTokens int
	Seed         uint64
	Dir          string // logs and kubeconfigs; a temporary directory when empty
	Logf         func(format string, args ...any)
}

// DefaultConfig is the `make chaos` run (about 15-18 minutes).
func DefaultConfig() Config {
	return Config{Tokens: 200, Churn: 12 * time.Minute, Converge: 5 * time.Minute, ChurnInterval: 700 * time.Millisecond,
		FaultRate: 0.1, LatencySpike: 3 * time.Second, KillMin: 2 * time.Second, KillMax: 14 * time.Second, MinKills: 20,
		RestartAPI: true, RolloutEvery: 90 * time.Second, MinRollouts: 3,
		FaultPhase: 90 * time.Second, RefreshFailPhase: 45 * time.Second, RefreshFailRate: 0.5,
		DriftPeriod: 30 * time.Second, SecondTokens: 8, Seed: 7}
}

// ShortConfig is the run inside `make test` (under 5 minutes).
func ShortConfig() Config {
	c := DefaultConfig()
	c.Tokens, c.Churn, c.Converge, c.MinKills = 60, 150*time.Second, 150*time.Second, 3
	c.FaultRate = 0.15
	c.KillMin, c.KillMax = time.Second, 5*time.Second
	c.ChurnInterval = 400 * time.Millisecond
	c.RolloutEvery, c.MinRollouts = 40*time.Second, 1
	c.FaultPhase, c.RefreshFailPhase = 35*time.Second, 25*time.Second
	return c
}

// Results are the figures of a run; Violations must all be zero.
type Results struct {
	Config               map[string]string `json:"config"`
	WallSeconds          float64           `json:"wall_seconds"`
	ConvergeSeconds      float64           `json:"converge_seconds"`
	Operations           map[string]int    `json:"operations"`
	ChurnErrors          int               `json:"churn_errors"`
	FaultsInjected       map[string]int    `json:"faults_injected"`
	Kills                int               `json:"leader_kills"`
	SigtermRollouts      int               `json:"sigterm_rollouts"`
	RolloutsNeedingKill  int               `json:"rollouts_needing_sigkill"`
	ManagerExits         int               `json:"manager_exits_restarted"`
	APIRestarts          int               `json:"apiserver_restarts"`
	RefreshFailurePhases int               `json:"refresh_failure_phases"`
	APICalls             int               `json:"cloudflare_api_calls"`
	APICallsByOp         map[string]int    `json:"cloudflare_api_calls_by_op"`
	Status429            int               `json:"http_429_total"`
	Budget429            int               `json:"http_429_rate_budget"`
	LiveServiceTokens    int               `json:"live_servicetokens"`
	CloudflareTokens     int               `json:"cloudflare_tokens"`
	OrphanedTokens       int               `json:"orphaned_tokens"`
	IssuedSecrets        int               `json:"issued_secrets"`
	ScannedBytes         int               `json:"scanned_bytes"`
	// Secret continuity (continuity.go): handed-out secrets sampled, how
	// many were replaced under a grace period (each one checked), failures
	// excused by reason, and revocations Cloudflare forced after a lost
	// rotate (reported, not violations).
	HeldSecretsSampled    int            `json:"held_secrets_sampled"`
	SuccessorEvents       int            `json:"successor_events"`
	ContinuityExcused     map[string]int `json:"continuity_excused"`
	LostRotateRevocations int            `json:"lost_rotate_revocations"`
	// ExpiredDuringGrace counts held secrets that stopped working because
	// their token expired (a late renewal), not because they were revoked.
	ExpiredDuringGrace int      `json:"expired_during_grace"`
	ExpiryDetails      []string `json:"expiry_details,omitempty"`
	// SecondClusterWrites counts the second cluster's writes (update,
	// rotate, refresh, delete) to its own tokens.
	SecondClusterWrites int            `json:"second_cluster_writes"`
	Violations          map[string]int `json:"violations"`
	ViolationDetails    []string       `json:"violation_details,omitempty"`
}

// TotalViolations sums Violations.
func (r *Results) TotalViolations() int {
	n := 0
	for _, v := range r.Violations {
		n += v
	}
	return n
}

// Table renders the figures as one text table.
func (r *Results) Table() string {
	var b strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&b, "| %-44s | %12v |\n", k, v) }
	sep := func(title string) {
		fmt.Fprintf(&b, "|-%s-|-%s-|\n| %-44s | %12s |\n", strings.Repeat("-", 44), strings.Repeat("-", 12), title, "")
	}
	fmt.Fprintf(&b, "| %-44s | %12s |\n", "chaos figure", "value")
	row("wall time (s)", fmt.Sprintf("%.0f", r.WallSeconds))
	row("convergence after faults stopped (s)", fmt.Sprintf("%.0f", r.ConvergeSeconds))
	sep("operations (churn)")
	for _, k := range sortedKeys(r.Operations) {
		row("  "+k, r.Operations[k])
	}
	row("  churn calls refused (api server down etc.)", r.ChurnErrors)
	sep("faults injected")
	for _, k := range sortedKeys(r.FaultsInjected) {
		row("  "+k, r.FaultsInjected[k])
	}
	row("  refresh-failure phases", r.RefreshFailurePhases)
	row("  leader SIGKILLs", r.Kills)
	row("  leader SIGTERM rollouts (issuance in flight)", r.SigtermRollouts)
	row("  rollouts needing SIGKILL (no exit in 90s)", r.RolloutsNeedingKill)
	row("  manager exits (restarted)", r.ManagerExits)
	row("  kube-apiserver restarts", r.APIRestarts)
	sep("cloudflare api")
	row("  calls", r.APICalls)
	for _, k := range sortedKeys(r.APICallsByOp) {
		row("  calls: "+k, r.APICallsByOp[k])
	}
	row("  429 answers (all)", r.Status429)
	row("  429 answers (rate budget exceeded)", r.Budget429)
	sep("end state")
	row("  live ServiceTokens", r.LiveServiceTokens)
	row("  Cloudflare tokens", r.CloudflareTokens)
	row("  of which Orphaned by policy", r.OrphanedTokens)
	row("  secrets issued by the simulator", r.IssuedSecrets)
	row("  bytes scanned for leaks", r.ScannedBytes)
	row("  second cluster: writes to its own tokens", r.SecondClusterWrites)
	sep("secret continuity (what a workload feels)")
	row("  handed-out secrets sampled", r.HeldSecretsSampled)
	row("  successors under a grace period (checked)", r.SuccessorEvents)
	for _, k := range sortedKeys(r.ContinuityExcused) {
		row("  excused: "+k, r.ContinuityExcused[k])
	}
	row("  revoked early by a lost rotate (Cloudflare)", r.LostRotateRevocations)
	row("  lost with their token's expiry (renewal late)", r.ExpiredDuringGrace)
	sep("invariant violations (must be 0)")
	for _, k := range sortedKeys(r.Violations) {
		row("  "+k, r.Violations[k])
	}
	row("TOTAL VIOLATIONS", r.TotalViolations())
	return b.String()
}

// WriteJSON writes the results to path.
func (r *Results) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Run runs the chaos suite and returns its figures. An error means the run
// itself could not be carried out (not an invariant violation).
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	crlog.SetLogger(logr.Discard()) // envtest logs through controller-runtime; the figures are what we print
	dir := cfg.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "servicetoken-chaos-"); err != nil {
			return nil, err
		}
	}
	r := &run{cfg: cfg, dir: dir, rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		res: &Results{Operations: map[string]int{}, Violations: map[string]int{}, FaultsInjected: map[string]int{},
			ContinuityExcused: map[string]int{}},
		sts: map[string]*tracked{}, cont: newTracker()}
	r.res.Config = map[string]string{
		"tokens": strconv.Itoa(cfg.Tokens), "churn": cfg.Churn.String(), "converge": cfg.Converge.String(),
		"fault_rate": fmt.Sprint(cfg.FaultRate), "kill_window": cfg.KillMin.String() + "-" + cfg.KillMax.String(),
		"min_kills": strconv.Itoa(cfg.MinKills), "restart_apiserver": strconv.FormatBool(cfg.RestartAPI),
		"rollout_every": cfg.RolloutEvery.String(), "min_rollouts": strconv.Itoa(cfg.MinRollouts),
		"fault_phase": cfg.FaultPhase.String(), "refresh_fail_phase": cfg.RefreshFailPhase.String(),
		"refresh_fail_rate":  fmt.Sprint(cfg.RefreshFailRate),
		"drift_check_period": cfg.DriftPeriod.String(), "second_cluster_tokens": strconv.Itoa(cfg.SecondTokens), "seed": strconv.FormatUint(cfg.Seed, 10), "dir": dir,
	}
	start := time.Now()
	defer func() { r.res.WallSeconds = time.Since(start).Seconds() }()
	defer r.teardown()
	if err := r.setup(ctx); err != nil {
		return r.res, err
	}
	// The sampler watches the Secrets from the first fault to the end of
	// convergence.
	soakStart := time.Now()
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); r.sampleLoop(sampleCtx) }()
	polled := make(chan struct{})
	go func() { defer close(polled); r.pollSecond(sampleCtx) }()
	stop := func() { stopSampling(); <-sampled; <-polled }
	defer stop()
	if err := r.soak(ctx); err != nil {
		return r.res, err
	}
	if err := r.converge(ctx); err != nil {
		return r.res, err
	}
	stop()
	if err := r.finishContinuity(ctx, soakStart); err != nil {
		return r.res, err
	}
	return r.res, nil
}

// run is the state of one chaos run.
type run struct {
	cfg Config
	dir string
	res *Results

	rndMu sync.Mutex
	rnd   *rand.Rand

	managerBin string
	cp         *harness.ControlPlane
	sim        *harness.Sim
	apiProc    *harness.Process  // the restarted kube-apiserver, once restarted
	apiTokens  []string          // Cloudflare API credentials (checked for leaks too)
	second     *secondClusterRun // nil when cfg.SecondTokens is 0

	mgrMu       sync.Mutex
	managers    [2]*harness.Process
	metricPorts [2]int
	paused      bool    // no supervision while the API server restarts
	rollingOut  [2]bool // a replica SIGTERMed by rollout, which restarts it itself
	metricsText strings.Builder

	faults *faultPlan // the simulator's fault configuration during the soak
	cont   *tracker   // the secret-continuity sampler's state

	stMu    sync.Mutex
	sts     map[string]*tracked // live ServiceTokens by namespace/name, as the suite made them
	nextID  int
	orphans orphanSet
	resMu   sync.Mutex
}

func (r *run) intn(n int) int {
	r.rndMu.Lock()
	defer r.rndMu.Unlock()
	return r.rnd.IntN(n)
}

func (r *run) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.intn(int(hi-lo)))
}

func (r *run) count(op string) {
	r.resMu.Lock()
	r.res.Operations[op]++
	r.resMu.Unlock()
}

func (r *run) churnError() {
	r.resMu.Lock()
	r.res.ChurnErrors++
	r.resMu.Unlock()
}

func (r *run) violation(kind, format string, args ...any) {
	r.resMu.Lock()
	defer r.resMu.Unlock()
	r.res.Violations[kind]++
	if len(r.res.ViolationDetails) < 200 {
		r.res.ViolationDetails = append(r.res.ViolationDetails, kind+": "+fmt.Sprintf(format, args...))
	}
}

func (r *run) teardown() {
	r.mgrMu.Lock()
	r.paused = true
	for _, m := range r.managers {
		if m != nil {
			m.Stop()
		}
	}
	r.mgrMu.Unlock()
	if r.second != nil {
		r.second.stop()
	}
	if r.sim != nil {
		r.sim.Stop()
	}
	if r.apiProc != nil {
		r.apiProc.Stop()
	}
	if r.cp != nil {
		r.cp.Stop()
	}
}

// simGet decodes a /_sim endpoint.
func (r *run) simGet(path string, out any) error {
	resp, err := http.Get(r.sim.URL + path)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(out)
}

func (r *run) simStats() (sim.Stats, error) {
	var st sim.Stats
	return st, r.simGet("/_sim/stats", &st)
}
