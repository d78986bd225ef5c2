package chaos

import (
	"flag"
	"time"
)

// Flags binds the configuration to a flag set (shared by `make chaos` and
// TestChaos) and returns a function that yields the parsed Config.
func Flags(fs *flag.FlagSet, prefix string, def Config) (cfg *Config, out *string) {
	c := def
	fs.IntVar(&c.Tokens, prefix+"tokens", c.Tokens, "ServiceTokens kept alive during the run")
	fs.DurationVar(&c.Churn, prefix+"duration", c.Churn, "how long churn, faults and leader kills last")
	fs.DurationVar(&c.Converge, prefix+"converge", c.Converge, "how long to wait for convergence once faults stop")
	fs.DurationVar(&c.ChurnInterval, prefix+"churn-interval", c.ChurnInterval, "mean pause between churn actions")
	fs.Float64Var(&c.FaultRate, prefix+"fault-rate", c.FaultRate, "probability (0..1) that a Cloudflare request gets a fault")
	fs.DurationVar(&c.LatencySpike, prefix+"latency-spike", c.LatencySpike, "delay of the latency fault")
	fs.DurationVar(&c.KillMin, prefix+"kill-min", c.KillMin, "shortest time a leader lives before SIGKILL")
	fs.DurationVar(&c.KillMax, prefix+"kill-max", c.KillMax, "longest time a leader lives before SIGKILL")
	fs.IntVar(&c.MinKills, prefix+"min-kills", c.MinKills, "fewer leader kills than this fails the run")
	fs.BoolVar(&c.RestartAPI, prefix+"restart-apiserver", c.RestartAPI, "restart kube-apiserver once, half way through")
	fs.DurationVar(&c.RolloutEvery, prefix+"rollout-every", c.RolloutEvery, "mean pause between SIGTERM rollouts of the leader during an in-flight issuance (0: none)")
	fs.IntVar(&c.MinRollouts, prefix+"min-rollouts", c.MinRollouts, "fewer SIGTERM rollouts than this fails the run")
	fs.DurationVar(&c.FaultPhase, prefix+"fault-phase", c.FaultPhase, "length of each phase of the general fault mix, between refresh-failure phases")
	fs.DurationVar(&c.RefreshFailPhase, prefix+"refresh-fail-phase", c.RefreshFailPhase, "length of each phase in which only lifetime renewals (refresh and update calls) fail (0: none)")
	fs.Float64Var(&c.RefreshFailRate, prefix+"refresh-fail-rate", c.RefreshFailRate, "probability (0..1) that a refresh or update call fails with 5xx during a refresh-failure phase")
	fs.DurationVar(&c.DriftPeriod, prefix+"drift-check-period", c.DriftPeriod, "the manager's --drift-check-period")
	fs.IntVar(&c.SecondTokens, prefix+"second-cluster-tokens", c.SecondTokens, "ServiceTokens of a second cluster (--cluster-name=second, own API token) named like first-cluster ones in the same account (0: no second cluster)")
	fs.Uint64Var(&c.Seed, prefix+"seed", c.Seed, "seed of the churn, the specs and the simulator")
	fs.StringVar(&c.Dir, prefix+"dir", c.Dir, "directory for logs (default: a temporary directory)")
	out = fs.String(prefix+"out", "chaos-results.json", "file the results are written to as JSON")
	_ = time.Second
	return &c, out
}
