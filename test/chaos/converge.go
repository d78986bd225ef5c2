package chaos

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

// converge re-enables disabled tokens (a disabled token's secret does not
// authenticate by design), waits until the invariants hold, and checks for
// leaks.
func (r *run) converge(ctx context.Context) error {
	c := r.cp.Client
	r.stMu.Lock()
	var disabled []*tracked
	for _, t := range r.sts {
		if t.disabled {
			disabled = append(disabled, t)
		}
	}
	r.stMu.Unlock()
	for _, t := range disabled {
		st := &v1alpha1.ServiceToken{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: t.name}, st); err != nil {
			return err
		}
		base := st.DeepCopy()
		st.Spec.Enabled = nil
		if err := c.Patch(ctx, st, client.MergeFrom(base)); err != nil {
			return err
		}
		t.disabled = false
		r.count("re-enable (before convergence)")
	}
	start := time.Now()
	deadline := start.Add(r.cfg.Converge)
	r.cfg.Logf("chaos: waiting up to %s for convergence", r.cfg.Converge)
	var last *check
	for {
		chk, err := r.check(ctx)
		if err != nil {
			return err
		}
		last = chk
		if chk.total() == 0 {
			r.res.ConvergeSeconds = time.Since(start).Seconds()
			r.cfg.Logf("chaos: converged after %.0fs", r.res.ConvergeSeconds)
			break
		}
		if time.Now().After(deadline) {
			r.res.ConvergeSeconds = time.Since(start).Seconds()
			r.cfg.Logf("chaos: NOT converged after %s", r.cfg.Converge)
			for _, l := range r.lastLimiterWaits(5) {
				r.cfg.Logf("chaos: last rate-limit waits: %s", l)
			}
			break
		}
		r.cfg.Logf("chaos: not converged yet: %v", chk.counts)
		time.Sleep(3 * time.Second)
	}
	for _, kind := range invariantKinds {
		r.res.Violations[kind] += 0
	}
	for kind, n := range last.counts {
		r.res.Violations[kind] += n
	}
	r.res.ViolationDetails = append(r.res.ViolationDetails, last.details...)
	r.res.LiveServiceTokens, r.res.CloudflareTokens, r.res.OrphanedTokens = last.live, last.tokens, last.orphaned

	r.scrapeMetrics()
	if err := r.checkLeaks(ctx); err != nil {
		return err
	}
	stats, err := r.simStats()
	if err != nil {
		return err
	}
	r.res.APICalls, r.res.APICallsByOp = stats.Requests, stats.ByOp
	r.res.Status429, r.res.Budget429 = stats.ByStatus[429], stats.RateLimited
	for k, n := range stats.Faults {
		r.res.FaultsInjected[string(k)] = n
	}
	// Most of these come from the refresh-failure phases: each one left a
	// renewal "rotated, refresh failed" or a refresh request to retry.
	r.res.FaultsInjected["5xx: on refresh and update calls"] = 0
	for _, op := range []string{sim.OpRefresh, sim.OpUpdate} {
		r.res.FaultsInjected["5xx: on refresh and update calls"] += stats.Count(op, http.StatusBadGateway) +
			stats.Count(op, http.StatusServiceUnavailable)
	}
	r.res.Violations["rate budget exceeded (real 429s)"] = stats.RateLimited
	if err := r.checkForeignTouches(stats.Requests); err != nil {
		return err
	}
	short := 0
	if r.res.Kills < r.cfg.MinKills {
		short = 1
		r.res.ViolationDetails = append(r.res.ViolationDetails, fmt.Sprintf("only %d leader kills, want at least %d", r.res.Kills, r.cfg.MinKills))
	}
	r.res.Violations["fewer leader kills than required"] = short
	short = 0
	if r.res.SigtermRollouts < r.cfg.MinRollouts {
		short = 1
		r.res.ViolationDetails = append(r.res.ViolationDetails, fmt.Sprintf("only %d SIGTERM rollouts, want at least %d", r.res.SigtermRollouts, r.cfg.MinRollouts))
	}
	r.res.Violations["fewer rollouts than required"] = short
	if r.cfg.RestartAPI && r.res.APIRestarts == 0 {
		r.res.Violations["kube-apiserver not restarted"] = 1
	}
	return nil
}

var invariantKinds = []string{
	"servicetoken not Ready", "servicetoken lost", "deletion not finished", "pending operation left",
	"token missing in cloudflare", "token differs from spec", "duplicate token", "replaced token kept past grace",
	"unaccounted token in cloudflare", "secret missing", "secret does not verify", "stray managed secret",
	"secret leaked", foreignTouch,
}

// check is one evaluation of the end-state invariants.
type check struct {
	counts                 map[string]int
	details                []string
	live, tokens, orphaned int
}

func (c *check) add(kind, format string, args ...any) {
	c.counts[kind]++
	if len(c.details) < 100 {
		c.details = append(c.details, kind+": "+fmt.Sprintf(format, args...))
	}
}

func (c *check) total() int {
	n := 0
	for _, v := range c.counts {
		n += v
	}
	return n
}

// check reads a consistent snapshot (no ServiceToken changed while the
// Secrets and the simulator were read) and evaluates the invariants.
func (r *run) check(ctx context.Context) (*check, error) {
	cl := r.cp.Client
	for attempt := 0; ; attempt++ {
		before := &v1alpha1.ServiceTokenList{}
		if err := cl.List(ctx, before); err != nil {
			return nil, err
		}
		chk := &check{counts: map[string]int{}}
		verified := map[string]bool{}
		secrets := map[string]*corev1.Secret{}
		for i := range before.Items {
			st := &before.Items[i]
			if st.Status.SecretName == "" {
				continue
			}
			s := &corev1.Secret{}
			if err := cl.Get(ctx, client.ObjectKey{Namespace: st.Namespace, Name: st.Status.SecretName}, s); err == nil {
				secrets[st.Namespace+"/"+st.Name] = s
				eff, _ := st.Effective()
				ok, err := r.sim.Verify(string(s.Data[eff.ClientIDKey]), string(s.Data[eff.ClientSecretKey]))
				if err != nil {
					return nil, err
				}
				verified[st.Namespace+"/"+st.Name] = ok
			}
		}
		tokens, err := r.sim.Tokens()
		if err != nil {
			return nil, err
		}
		managed := &corev1.SecretList{}
		if err := cl.List(ctx, managed, client.MatchingLabels{v1alpha1.LabelManaged: "true"}); err != nil {
			return nil, err
		}
		after := &v1alpha1.ServiceTokenList{}
		if err := cl.List(ctx, after); err != nil {
			return nil, err
		}
		if !sameVersions(before, after) && attempt < 10 {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		foreign, err := r.evaluateSecond(ctx, chk, tokens)
		if err != nil {
			return nil, err
		}
		r.evaluate(chk, after, secrets, verified, tokens, managed, foreign)
		return chk, nil
	}
}

func sameVersions(a, b *v1alpha1.ServiceTokenList) bool {
	if len(a.Items) != len(b.Items) {
		return false
	}
	rv := map[string]string{}
	for _, st := range a.Items {
		rv[st.Namespace+"/"+st.Name] = st.ResourceVersion
	}
	for _, st := range b.Items {
		if rv[st.Namespace+"/"+st.Name] != st.ResourceVersion {
			return false
		}
	}
	return true
}

func (r *run) evaluate(chk *check, list *v1alpha1.ServiceTokenList, secrets map[string]*corev1.Secret, verified map[string]bool,
	tokens []harness.SimToken, managed *corev1.SecretList, foreign map[string]bool) {
	r.stMu.Lock()
	defer r.stMu.Unlock()
	now := time.Now()
	byID := map[string]harness.SimToken{}
	for _, t := range tokens {
		byID[t.ID] = t
	}
	accounted := map[string]bool{}
	seen := map[string]bool{}
	ownerOf := map[string]*v1alpha1.ServiceToken{}
	for i := range list.Items {
		st := &list.Items[i]
		key := st.Namespace + "/" + st.Name
		t, ours := r.sts[key]
		if !st.DeletionTimestamp.IsZero() || !ours {
			chk.add("deletion not finished", "%s still exists (deleting since %v)", key, st.DeletionTimestamp)
			continue
		}
		seen[key] = true
		ownerOf[string(st.UID)] = st
		chk.live++
		eff, err := st.EffectiveIn(firstCluster)
		if err != nil {
			chk.add("servicetoken not Ready", "%s: invalid spec %v", key, err)
			continue
		}
		ready := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != st.Generation ||
			st.Status.ObservedGeneration != st.Generation {
			reason := "none"
			if ready != nil { // the message and its age tell a stuck object from a slow one
				reason = fmt.Sprintf("%s/%s since %s: %q", ready.Status, ready.Reason, ready.LastTransitionTime.UTC().Format(time.TimeOnly), ready.Message)
			}
			chk.add("servicetoken not Ready", "%s: Ready %s (generation %d, observed %d)", key, reason, st.Generation, st.Status.ObservedGeneration)
		}
		if st.Status.PendingOperation != nil {
			chk.add("pending operation left", "%s: %s", key, st.Status.PendingOperation.Type)
		}
		names := map[string]bool{}
		for _, n := range t.names {
			names[n] = true
		}
		tok, ok := byID[st.Status.TokenID]
		if !ok {
			chk.add("token missing in cloudflare", "%s: token %q not in Cloudflare", key, st.Status.TokenID)
		} else {
			accounted[tok.ID] = true
			if tok.Name != eff.TokenName || tok.Enabled != eff.Enabled || !v1alpha1.SameDuration(tok.Duration, eff.Duration) ||
				tok.ClientID != st.Status.ClientID {
				chk.add("token differs from spec", "%s: token %s name/enabled/duration/client ID differ from the spec and status", key, tok.ID)
			}
			if !tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt) {
				chk.add("token differs from spec", "%s: token %s expired at %s", key, tok.ID, tok.ExpiresAt.Format(time.RFC3339))
			}
		}
		if prev := st.Status.PreviousTokenID; prev != "" {
			if _, ok := byID[prev]; ok {
				accounted[prev] = true
				if exp := st.Status.PreviousSecretExpiresAt; exp == nil || now.After(exp.Add(time.Minute)) {
					chk.add("replaced token kept past grace", "%s: replaced token %s still exists", key, prev)
				}
			}
		}
		for _, tk := range tokens {
			// Its tokens carry its names, or the "#<uid>" marker a token is
			// created with (an interrupted create of an explicit name).
			mine := names[tk.Name] || strings.HasSuffix(tk.Name, v1alpha1.OwnerMarker(st.UID))
			if mine && tk.ID != st.Status.TokenID && tk.ID != st.Status.PreviousTokenID {
				accounted[tk.ID] = true
				chk.add("duplicate token", "%s: token %s carries its name but is not its token", key, tk.ID)
			}
		}
		s := secrets[key]
		switch {
		case s == nil:
			chk.add("secret missing", "%s: Secret %q not found", key, st.Status.SecretName)
		case s.Name != eff.SecretName:
			chk.add("secret missing", "%s: status names Secret %s, spec wants %s", key, s.Name, eff.SecretName)
		case string(s.Data[eff.ClientIDKey]) != st.Status.ClientID || !verified[key]:
			chk.add("secret does not verify", "%s: Secret %s does not hold a credential Cloudflare accepts", key, s.Name)
		}
	}
	for key := range r.sts {
		if !seen[key] {
			chk.add("servicetoken lost", "%s was never deleted by the suite but is gone", key)
		}
	}
	for _, tk := range tokens {
		chk.tokens++
		if accounted[tk.ID] || foreign[tk.ID] { // foreign: the second cluster's
			continue
		}
		if r.orphans.has(tk.ID, tk.Name) {
			chk.orphaned++
			continue
		}
		chk.add("unaccounted token in cloudflare", "token %s (name %q) belongs to no ServiceToken", tk.ID, tk.Name)
	}
	for _, s := range managed.Items {
		owner := metav1.GetControllerOf(&s)
		if owner == nil {
			chk.add("stray managed secret", "%s/%s has no owner", s.Namespace, s.Name)
			continue
		}
		st := ownerOf[string(owner.UID)]
		if st == nil || st.Status.SecretName != s.Name {
			chk.add("stray managed secret", "%s/%s is not the Secret of a live ServiceToken", s.Namespace, s.Name)
		}
	}
}

// checkLeaks looks for every secret the simulator ever issued (and every API
// token) in the manager logs, events, statuses and metrics.
func (r *run) checkLeaks(ctx context.Context) error {
	issued, err := r.sim.IssuedSecrets()
	if err != nil {
		return err
	}
	r.res.IssuedSecrets = len(issued)
	var patterns []string
	apiTokens := r.apiTokens
	if r.second != nil {
		apiTokens = append(append([]string{}, apiTokens...), r.second.apiToken)
	}
	for _, s := range append(issued, apiTokens...) {
		patterns = append(patterns, s, base64.StdEncoding.EncodeToString([]byte(s)))
	}
	m := newMatcher(patterns)
	sources := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join(r.dir, "manager-*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		sources["log "+filepath.Base(f)] = b
	}
	cl := r.cp.Client
	for name, list := range map[string]client.ObjectList{
		"events (core/v1)": &corev1.EventList{}, "events (events.k8s.io/v1)": &eventsv1.EventList{},
		"ServiceTokens (spec and status)": &v1alpha1.ServiceTokenList{}, "CloudflareAccounts": &v1alpha1.CloudflareAccountList{},
		"ClusterCloudflareAccounts": &v1alpha1.ClusterCloudflareAccountList{},
	} {
		if err := cl.List(ctx, list); err != nil {
			return err
		}
		b, err := json.Marshal(list)
		if err != nil {
			return err
		}
		sources[name] = b
	}
	r.resMu.Lock()
	sources["metrics"] = []byte(r.metricsText.String())
	r.resMu.Unlock()
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	sort.Strings(names)
	leaks := 0
	for _, n := range names {
		r.res.ScannedBytes += len(sources[n])
		if hits := m.count(sources[n]); hits > 0 {
			leaks += hits
			r.res.ViolationDetails = append(r.res.ViolationDetails, fmt.Sprintf("secret leaked: %d occurrence(s) of issued secrets in %s", hits, n))
		}
	}
	r.res.Violations["secret leaked"] = leaks
	if len(issued) == 0 {
		r.res.Violations["simulator issued no secrets (check broken)"] = 1
	}
	return nil
}

// matcher finds any of many patterns (all at least keyLen long) in a text in
// one pass: each pattern is indexed by a fixed slice of its middle.
type matcher struct {
	byKey map[[keyLen]byte][]match
}

type match struct {
	pattern string
	offset  int // where the key starts inside the pattern
}

const keyLen = 16

func newMatcher(patterns []string) *matcher {
	m := &matcher{byKey: map[[keyLen]byte][]match{}}
	for _, p := range patterns {
		if len(p) < keyLen {
			continue
		}
		off := min(8, len(p)-keyLen)
		var k [keyLen]byte
		copy(k[:], p[off:off+keyLen])
		m.byKey[k] = append(m.byKey[k], match{pattern: p, offset: off})
	}
	return m
}

func (m *matcher) count(text []byte) int {
	hits := 0
	var k [keyLen]byte
	for i := 0; i+keyLen <= len(text); i++ {
		copy(k[:], text[i:i+keyLen])
		for _, mt := range m.byKey[k] {
			start := i - mt.offset
			if start >= 0 && start+len(mt.pattern) <= len(text) && string(text[start:start+len(mt.pattern)]) == mt.pattern {
				hits++
			}
		}
	}
	return hits
}

// readyCount counts the ServiceTokens whose Ready condition is True.
func (r *run) readyCount(ctx context.Context) (ready, total int, err error) {
	list := &v1alpha1.ServiceTokenList{}
	if err := r.cp.Client.List(ctx, list); err != nil {
		return 0, 0, err
	}
	for _, st := range list.Items {
		total++
		if meta.IsStatusConditionTrue(st.Status.Conditions, v1alpha1.ConditionReady) {
			ready++
		}
	}
	return ready, total, nil
}

// lastLimiterWaits returns the managers' last n debug lines about objects
// waiting for the rate limiter (with the limiter's state), oldest first: what
// to read when objects stay RateLimited.
func (r *run) lastLimiterWaits(n int) []string {
	logs, _ := filepath.Glob(filepath.Join(r.dir, "manager-*.log"))
	var lines []string
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			var e struct {
				TS        string `json:"ts"`
				Msg       string `json:"msg"`
				Namespace string `json:"namespace"`
				Name      string `json:"name"`
				RetryIn   string `json:"retryIn"`
				Limiter   string `json:"limiter"`
			}
			if !strings.Contains(l, "waiting for the Cloudflare rate limit") || json.Unmarshal([]byte(l), &e) != nil {
				continue
			}
			lines = append(lines, fmt.Sprintf("%s %s %s/%s retry in %s; %s", e.TS, filepath.Base(f), e.Namespace, e.Name, e.RetryIn, e.Limiter))
		}
	}
	sort.Strings(lines)
	return lines[max(len(lines)-n, 0):]
}
