package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

// ---- scenario 7: two accounts, one credential, a budget shared with others ----

// Scenario 7's two account objects use one API token of one Cloudflare user
// (same content in two credentials Secrets), against one simulator whose
// budget is --rate, while an outside consumer of the same user (the
// simulator's) spends --outside-fraction of that budget evenly over every
// window. The operator is not told about it: only Cloudflare's Ratelimit
// headers show what is left.
const (
	sharedToken   = "bench-shared-api-token" // the simulator's only API token; not a secret
	sharedUser    = "bench-user"
	sharedNSA     = "bench-shared-a" // CloudflareAccount "cf"
	sharedNSB     = "bench-shared-b" // ServiceTokens of ClusterCloudflareAccount "bench-shared"
	sharedCluster = "bench-shared"
)

// sharedSimArgs are the flags of scenario 7's simulator: --rate as the
// user's budget, Cloudflare's 5-minute lockout, and the outside consumer.
func (b *bench) sharedSimArgs() []string {
	return []string{"--accounts=" + accountID, "--rate-limit=" + b.c.rate, "--seed=1",
		"--api-tokens=" + sharedToken + "@" + sharedUser, "--lockout=5m",
		"--outside-fraction=" + sharedUser + "=" + strconv.FormatFloat(b.c.outsideFraction, 'f', -1, 64)}
}

// sharedAccounts creates a CloudflareAccount in sharedNSA and a
// ClusterCloudflareAccount whose credentials Secret is in sharedNSB: two
// Secrets with the same API token, both accounts with the budget --rate.
func (b *bench) sharedAccounts(s *harness.Sim) error {
	ctx := context.Background()
	for _, ns := range []string{sharedNSA, sharedNSB} {
		if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf-credentials", Labels: credentialsLabel},
			StringData: map[string]string{v1alpha1.DefaultAPITokenKey: sharedToken}}
		if err := b.k8s.Create(ctx, creds); err != nil {
			return err
		}
	}
	acct := &v1alpha1.CloudflareAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sharedNSA, Name: "cf"}}
	acct.Spec.AccountID, acct.Spec.APIURL = accountID, s.APIURL()
	acct.Spec.CredentialsRef.Name = "cf-credentials"
	acct.Spec.RateLimit = rateLimit(b.c.rate)
	if err := b.k8s.Create(ctx, acct); err != nil {
		return err
	}
	cluster := &v1alpha1.ClusterCloudflareAccount{ObjectMeta: metav1.ObjectMeta{Name: sharedCluster}}
	cluster.Spec.AccountID, cluster.Spec.APIURL = accountID, s.APIURL()
	cluster.Spec.CredentialsRef.Name, cluster.Spec.CredentialsRef.Namespace = "cf-credentials", sharedNSB
	cluster.Spec.RateLimit = rateLimit(b.c.rate)
	if err := b.k8s.Create(ctx, cluster); err != nil {
		return err
	}
	b.accounts += 2
	return nil
}

// sharedServiceToken is scenario 7's object i: even i in sharedNSA on the
// CloudflareAccount, odd i in sharedNSB on the ClusterCloudflareAccount.
func sharedServiceToken(i int) *v1alpha1.ServiceToken {
	name := fmt.Sprintf("shared-%05d", i)
	if i%2 == 0 {
		return serviceToken(sharedNSA, name, "", "")
	}
	st := serviceToken(sharedNSB, name, "", "")
	st.Spec.AccountRef = v1alpha1.AccountReference{Kind: v1alpha1.KindClusterCloudflareAcc, Name: sharedCluster}
	return st
}

func (b *bench) sharedBudget(dir string) error {
	n := b.c.sharedN
	sim := b.sims["shared"]
	requests, period, _ := parseRate(b.c.rate)
	rate := float64(requests) / period.Seconds()
	left := (1 - b.c.outsideFraction) * rate // what the outside consumer leaves
	lower := float64(n) / left
	_ = resetStats(sim)
	start := time.Now()
	b.logf("scenario 7: %d new ServiceTokens on two accounts with one credential; budget %s, %.0f%% of it spent by another client of the user (lower bound %.0fs)",
		n, b.c.rate, 100*b.c.outsideFraction, lower)
	applied := make([]time.Time, n)
	if err := b.createAll(n, func(i int) client.Object {
		applied[i] = time.Now()
		return sharedServiceToken(i)
	}); err != nil {
		return err
	}
	// A lockout would cost 5 minutes: leave room to see it end.
	ready, err := b.readyTimesIn(map[string]int{sharedNSA: (n + 1) / 2, sharedNSB: n / 2}, time.Duration(3*lower+420)*time.Second)
	if err != nil {
		return err
	}
	var last time.Time
	var toReady []time.Duration
	for i := range n {
		st := sharedServiceToken(i)
		t := ready[st.Namespace+"/"+st.Name]
		toReady = append(toReady, t.Sub(applied[i]))
		if t.After(last) {
			last = t
		}
	}
	wall := last.Sub(start).Seconds()
	dumpCalls(sim, dir, "calls-7.csv")
	st := stats(sim)
	rss, heap := b.mgr.memory()
	calls := total(st.ByOp)
	status429 := st.ByStatus["429"]
	ok := st.Lockouts == 0 && st.RateLimited == 0 && status429 == 0 && wall/lower <= 1.15
	b.addResult(Result{Scenario: "7 shared budget", N: n, WallS: round(wall, 1), LowerBoundS: round(lower, 1),
		Ratio: round(wall/lower, 3), CallsByOp: st.ByOp, CallsPerToken: round(float64(calls)/float64(n), 4), Status429: status429,
		PeakRSSMiB: round(rss, 1), PeakHeapMiB: round(heap, 1),
		P50ms: round(percentile(toReady, 0.5), 0), P99ms: round(percentile(toReady, 0.99), 0),
		Target: "0 lockouts, 0 × 429, ratio ≤ 1.15", Met: ok,
		Notes: fmt.Sprintf("one API token (user %s) for a CloudflareAccount and a ClusterCloudflareAccount (N/2 each); budget %s, "+
			"%.0f%% spent by an outside client of the same user, so lower bound = N ÷ %.0f%% of the rate (%.2f calls/s); "+
			"simulator: %d lockouts, %d × 429 from the budget; the operator's calls averaged %.2f/s; p50/p99 = apply→Ready",
			sharedUser, b.c.rate, 100*b.c.outsideFraction, 100*(1-b.c.outsideFraction), left,
			st.Lockouts, st.RateLimited, float64(calls)/wall),
		Extra: map[string]any{"lockouts": st.Lockouts, "budget_429s": st.RateLimited, "outside_fraction": b.c.outsideFraction}})
	b.logf("scenario 7: all Ready after %.1fs (ratio %.3f), %d lockouts, %d × 429", wall, wall/lower, st.Lockouts, status429)
	return nil
}
