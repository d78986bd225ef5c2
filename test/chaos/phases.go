package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

// faultPlan owns the simulator's fault configuration, of which there is one
// at a time: the soak alternates phases (the general mix, stretches of
// refresh failures) and a rollout briefly overrides the phase with slow
// issuance, then hands it back.
type faultPlan struct {
	mu       sync.Mutex
	sim      *harness.Sim
	phase    sim.Faults
	override *sim.Faults
}

func (f *faultPlan) setPhase(phase sim.Faults) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.phase = phase
	return f.applyLocked()
}

// setOverride replaces the phase until clearOverride.
func (f *faultPlan) setOverride(o sim.Faults) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.override = &o
	return f.applyLocked()
}

func (f *faultPlan) clearOverride() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.override = nil
	return f.applyLocked()
}

// applyLocked sends the configuration in force; the lock keeps the
// simulator's state in the order the calls were made.
func (f *faultPlan) applyLocked() error {
	cfg := f.phase
	if f.override != nil {
		cfg = *f.override
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	return f.sim.SetFaults(string(b))
}

// mixFaults is the general fault mix: every kind, on every operation.
func (r *run) mixFaults() sim.Faults {
	return sim.Faults{Rate: r.cfg.FaultRate, LatencySpike: r.cfg.LatencySpike, RetryAfter: time.Second}
}

// refreshFailFaults makes the calls that renew a lifetime (refresh, and the
// PUT of the duration that renews most tokens) fail with 5xx, and nothing
// else: a token renewed by Rotate is then "rotated, refresh failed" and must
// be refreshed again without rotating a second time.
func (r *run) refreshFailFaults() sim.Faults {
	return sim.Faults{Rate: r.cfg.RefreshFailRate, Kinds: []sim.FaultKind{sim.Fault5xx}, Ops: []string{sim.OpRefresh, sim.OpUpdate}}
}

// slowIssuance delays every create and rotate by latency and nothing else,
// so an issuance is surely in flight when the leader is told to stop.
func slowIssuance(latency time.Duration) sim.Faults {
	return sim.Faults{Rate: 1, Kinds: []sim.FaultKind{sim.FaultLatency}, LatencySpike: latency,
		Ops: []string{sim.OpCreate, sim.OpRotate}}
}

// faultPhaseLoop alternates the general mix (cfg.FaultPhase) with stretches
// of refresh failures (cfg.RefreshFailPhase) until ctx ends.
func (r *run) faultPhaseLoop(ctx context.Context) {
	if r.cfg.RefreshFailPhase <= 0 || r.cfg.RefreshFailRate <= 0 {
		return // the general mix throughout
	}
	for sleepCtx(ctx, r.cfg.FaultPhase) {
		if err := r.faults.setPhase(r.refreshFailFaults()); err != nil {
			r.cfg.Logf("chaos: switching to refresh failures: %v", err)
			continue
		}
		r.resMu.Lock()
		r.res.RefreshFailurePhases++
		r.resMu.Unlock()
		r.cfg.Logf("chaos: refresh and update calls fail (%v, 5xx) for %s", r.cfg.RefreshFailRate, r.cfg.RefreshFailPhase)
		ok := sleepCtx(ctx, r.cfg.RefreshFailPhase)
		if err := r.faults.setPhase(r.mixFaults()); err != nil {
			r.cfg.Logf("chaos: switching back to the general fault mix: %v", err)
		}
		if !ok {
			return
		}
	}
}

// off ends every fault phase and override.
func (f *faultPlan) off() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.phase, f.override = sim.Faults{}, nil
	if err := f.applyLocked(); err != nil {
		return fmt.Errorf("switching faults off: %w", err)
	}
	return nil
}
