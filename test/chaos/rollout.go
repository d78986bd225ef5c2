package chaos

import (
	"context"
	"syscall"
	"time"

	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

const (
	// A rollout makes every create and rotate this slow, so the rotation it
	// requests is in flight when the leader is told to stop.
	issuanceLatencyMin = 2 * time.Second
	issuanceLatencyMax = 4 * time.Second
	// inFlightWait is how long after requesting the rotation the leader is
	// sent SIGTERM: enough to start the call, not enough to finish it.
	inFlightWait = time.Second
	// rolloutExitTimeout is how long a replica gets to exit after SIGTERM
	// (the manager's --graceful-shutdown-timeout defaults to 60s) before it
	// is SIGKILLed, as a kubelet would after terminationGracePeriodSeconds.
	rolloutExitTimeout = 90 * time.Second
)

// rolloutLoop now and then rolls the leader the way a Deployment rollout
// does, SIGTERM rather than the SIGKILL of killLoop, while an issuance is in
// flight: the manager must finish (or safely abandon) the call and store its
// secret before it exits.
func (r *run) rolloutLoop(ctx context.Context) {
	if r.cfg.RolloutEvery <= 0 {
		return
	}
	for sleepCtx(ctx, r.between(r.cfg.RolloutEvery/2, r.cfg.RolloutEvery*3/2)) {
		for ctx.Err() == nil {
			done, err := r.rollout(ctx)
			if err != nil {
				r.cfg.Logf("chaos: rollout: %v", err)
			}
			if done {
				break
			}
			// No leader yet, the API server is restarting, or the leader
			// changed under us: try again soon rather than a period later.
			sleepCtx(ctx, 2*time.Second)
		}
	}
}

// rollout slows issuance down, requests a rotation on a random
// ServiceToken, SIGTERMs the leader a moment later and starts the replica
// again once it has exited. It reports whether a rollout happened.
func (r *run) rollout(ctx context.Context) (bool, error) {
	i, p := r.leader()
	t := r.pick()
	if p == nil || t == nil || !r.claim(i, p) {
		return false, nil
	}
	signalled := false
	defer func() {
		if !signalled {
			r.release(i)
		}
	}()
	latency := r.between(issuanceLatencyMin, issuanceLatencyMax)
	if err := r.faults.setOverride(slowIssuance(latency)); err != nil {
		return false, err
	}
	defer func() {
		if err := r.faults.clearOverride(); err != nil {
			r.cfg.Logf("chaos: rollout: restoring the fault phase: %v", err)
		}
	}()
	if err := r.do(ctx, "rotate-request", t); err != nil {
		r.churnError()
		return false, err
	}
	r.count("rotate-request (rollout)")
	if !sleepCtx(ctx, inFlightWait) || !r.sigterm(p) {
		return false, nil
	}
	signalled = true
	r.cfg.Logf("chaos: rollout: SIGTERM to leader manager-%d, rotation of %s in flight (issuance latency %s)",
		i, t.key(), latency.Round(time.Millisecond))
	killed := harness.WaitFor(rolloutExitTimeout, p.Exited) != nil
	if killed {
		r.cfg.Logf("chaos: rollout: manager-%d did not exit within %s of SIGTERM; SIGKILL", i, rolloutExitTimeout)
		p.Kill()
	}
	r.mgrMu.Lock()
	err := r.startManager(i)
	r.rollingOut[i] = false // on error, supervise starts it (the process has exited)
	r.mgrMu.Unlock()
	r.resMu.Lock()
	r.res.SigtermRollouts++
	if killed {
		r.res.RolloutsNeedingKill++
	}
	r.resMu.Unlock()
	return true, err
}

// claim reserves replica i for a rollout if p is still its running process:
// from here killLoop and supervise leave it alone, so the leader is neither
// SIGKILLed between the rotation request and the SIGTERM nor restarted twice.
func (r *run) claim(i int, p *harness.Process) bool {
	r.mgrMu.Lock()
	defer r.mgrMu.Unlock()
	if r.paused || r.rollingOut[i] || r.managers[i] != p || p.Exited() {
		return false
	}
	r.rollingOut[i] = true
	return true
}

// release gives an unsignalled replica back to killLoop and supervise (which
// restarts it if it exited meanwhile).
func (r *run) release(i int) {
	r.mgrMu.Lock()
	r.rollingOut[i] = false
	r.mgrMu.Unlock()
}

// sigterm sends SIGTERM to the claimed process unless it has exited or the
// API server is being restarted.
func (r *run) sigterm(p *harness.Process) bool {
	r.mgrMu.Lock()
	defer r.mgrMu.Unlock()
	if r.paused || p.Exited() {
		return false
	}
	// The process group, as harness.Process.Stop signals it.
	_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
	return true
}
