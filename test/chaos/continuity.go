package chaos

// Secret continuity (issue 11) measures what a workload feels rather than the
// state the run converges to: for every secret S the operator writes into a
// Secret, once its successor S' is written at time t under a grace period g,
// S keeps verifying until t + g (minus a few seconds of skew).
//
// A sampler reads the managed Secrets about once a second. The pair (client
// ID, client secret) a ServiceToken's Secret holds is a "handed-out secret"
// when the Secret's client-secret-sha256 annotation matches the value (so a
// value the churn corrupted by hand is not one). When another handed-out
// pair takes its place, the old pair is "retiring": the sampler asks the
// simulator's /_sim/verify about it every tick until its deadline. A failure
// before the deadline is a candidate; excused candidates (grace 0s, disabled,
// deleted ServiceToken, token deleted by the churn) are counted by reason;
// a candidate explained by a lost rotate (a dropped rotate response in the
// simulator's log, or the operator's RotationLost event) is counted as
// lost_rotate_revocations; the rest are violations.
//
// The secrets are kept in memory only, to ask /_sim/verify; nothing here
// prints one.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

const (
	// samplePeriod is how often the sampler reads the Secrets and verifies
	// retiring secrets.
	samplePeriod = time.Second
	// clockSkew is what the deadline forgives on top of the sampling lag
	// (the deadline counts from the last snapshot that did not show the
	// successor, i.e. up to one samplePeriod before it was really written).
	clockSkew = 3 * time.Second
	// lostSlack: a rotate whose response was lost can precede the first
	// time the sampler saw the secret it revoked by a sampling period and
	// the operator's write of that secret.
	lostSlack = 5*time.Second + samplePeriod
	// lostEventLag: the operator announces a lost rotation while recovering,
	// which can be recorded a little after the held secret stopped working.
	lostEventLag = 30 * time.Second

	// The operator's Secret annotations. Spelled out here rather than taken
	// from api/v1alpha1 so the suite does not depend on an unexported
	// constant (client-secret-sha256) or on one still being introduced
	// (operation-id).
	annotationSecretHash  = "access.servicetoken.dev/client-secret-sha256"
	annotationOperationID = "access.servicetoken.dev/operation-id"
	// reasonRotationLost is the Warning event the operator records when a
	// rotate's response was lost and recovering revoked the held secret.
	reasonRotationLost = "RotationLost"

	violationHeldRevoked = "held secret revoked before its grace"
)

// Excuse reasons, as counted in Results.ContinuityExcused.
const (
	excuseGraceZero    = "grace 0s (revoked at once by design)"
	excuseDeleted      = "servicetoken deleted"
	excuseChurnDeleted = "token deleted in cloudflare by the churn"
	excuseDisabled     = "token disabled"
	// The churn deleted or corrupted the Secret: the operator must rotate at
	// once to store a credential again, and that rotation takes Cloudflare's
	// single previous-secret slot from a secret still in its grace.
	excuseSecretLost = "secret deleted or edited by the churn (recovery rotation)"
	causeDisplaced   = "a later rotation displaced it (Cloudflare keeps one previous secret)"
	causeTokenGone   = "its token no longer exists in Cloudflare"
)

// pairKey identifies a handed-out secret. It holds the secret itself, in
// memory only: /_sim/verify needs it. Never format one.
type pairKey struct{ clientID, secret string }

// String and GoString keep an accidental %v (of a pairKey or of anything
// that embeds one) from printing the secret.
func (pairKey) String() string   { return "handed-out secret (redacted)" }
func (pairKey) GoString() string { return "pairKey{redacted}" }

// held is a handed-out secret as the sampler first saw it.
type held struct {
	pairKey
	ns, name    string
	uid         types.UID
	tokenID     string // the Secret's token-id annotation (status.tokenID when absent)
	operationID string // the issuance that produced it, when the operator records one
	firstSeen   time.Time
}

// retiring is a handed-out secret whose successor appeared: it must keep
// verifying until deadline.
type retiring struct {
	*held
	grace        time.Duration
	writtenAfter time.Time // the successor was written after this (the previous snapshot, which did not show it)
	deadline     time.Time
	excused      string // the last excuse counted, so a pair counts once per excuse
	done         bool   // judged for good (candidate, or excused permanently)
}

// candidate is a retiring secret that stopped verifying before its deadline
// without an excuse. Whether it is a violation is decided at the end, once
// the simulator's request log and the operator's events can explain it.
type candidate struct {
	*retiring
	failedAt time.Time
	tokenID  string
	cause    string // what the simulator's state says happened (no secret)
	expired  bool   // the token itself expired: a late renewal, not a revocation
}

// stView is what one snapshot says about a ServiceToken.
type stView struct {
	ns, name string
	uid      types.UID
	grace    time.Duration
	enabled  bool
	deleting bool
	current  *held // the handed-out pair its Secret holds, nil when none (missing, corrupted)
	rank     int   // where current came from: 2 the spec's Secret name, 1 the status's
}

// tracker is the sampler's memory. Its methods are safe for concurrent use;
// the HTTP calls happen outside it.
type tracker struct {
	mu           sync.Mutex
	current      map[types.UID]*held // the pair each ServiceToken's Secret holds now
	replaced     map[pairKey]bool    // pairs that had a successor (a stale copy is not "new")
	retiring     []*retiring
	views        map[types.UID]*stView   // the last snapshot
	lastSnapshot time.Time               // when the last snapshot started
	churnDeleted map[string]bool         // token IDs and "client:"+client IDs the churn deleted in Cloudflare
	secretLost   map[types.UID]time.Time // the last time the churn deleted or edited a ServiceToken's Secret
	stDeleted    map[types.UID]bool      // ServiceTokens the churn deletes (noted before it does)
	deletedAhead int                     // failures excused by a deletion the last snapshot did not show yet
	sampled      int                     // distinct handed-out pairs seen
	successors   int                     // replacements under a grace period > 0
	excused      map[string]int
	candidates   []*candidate
}

func newTracker() *tracker {
	return &tracker{current: map[types.UID]*held{}, replaced: map[pairKey]bool{}, views: map[types.UID]*stView{},
		churnDeleted: map[string]bool{}, secretLost: map[types.UID]time.Time{}, stDeleted: map[types.UID]bool{}, excused: map[string]int{}}
}

// noteServiceTokenDeletion records that the churn deletes a ServiceToken,
// before it does. The operator then deletes its tokens within milliseconds,
// often between a snapshot (which still shows the ServiceToken live) and
// the verify that follows it: the snapshot alone would call that an early
// revocation. A deletion that did not happen after all is noted back
// (deleting false).
func (t *tracker) noteServiceTokenDeletion(uid types.UID, deleting bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if deleting {
		t.stDeleted[uid] = true
	} else {
		delete(t.stDeleted, uid)
	}
}

// noteSecretLost records that the churn deletes or edits a ServiceToken's
// Secret now (before it does).
func (t *tracker) noteSecretLost(uid types.UID, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.secretLost[uid] = at
}

// noteChurnDeletion records a token the churn deletes in Cloudflare, before
// it does: its secrets stop verifying for a reason the operator cannot help.
func (t *tracker) noteChurnDeletion(tokenID, clientID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tokenID != "" {
		t.churnDeleted[tokenID] = true
	}
	if clientID != "" {
		t.churnDeleted["client:"+clientID] = true
	}
}

// observe takes one snapshot (started at now): a ServiceToken whose Secret
// holds a new handed-out pair retires the pair it held before.
func (t *tracker) observe(now time.Time, views map[types.UID]*stView) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The successor was written after the previous snapshot read the
	// Secrets (which did not show it): count the grace from there, the
	// earliest it can have been written. After a gap (API server down, a
	// slow list) that is lenient rather than wrong: the write may have
	// happened anywhere in the gap.
	written := t.lastSnapshot
	if written.IsZero() {
		written = now.Add(-samplePeriod)
	}
	t.lastSnapshot, t.views = now, views
	for uid, v := range views {
		p := v.current
		if p == nil || t.replaced[p.pairKey] {
			continue // nothing handed out now, or a stale copy of a replaced pair
		}
		old := t.current[uid]
		if old != nil && old.pairKey == p.pairKey {
			continue
		}
		t.current[uid] = p
		t.sampled++
		if old != nil {
			t.retire(old, v.grace, written)
		}
	}
	for uid := range t.current {
		if _, ok := views[uid]; !ok {
			delete(t.current, uid) // the ServiceToken is gone: no successor will come
		}
	}
}

func (t *tracker) retire(old *held, grace time.Duration, written time.Time) {
	t.replaced[old.pairKey] = true
	if grace <= 0 {
		t.excused[excuseGraceZero]++
		return
	}
	t.successors++
	t.retiring = append(t.retiring, &retiring{held: old, grace: grace, writtenAfter: written,
		deadline: written.Add(grace - clockSkew)})
}

// due returns the retiring pairs still inside their grace at now, and
// forgets the others.
func (t *tracker) due(now time.Time) []*retiring {
	t.mu.Lock()
	defer t.mu.Unlock()
	keep := t.retiring[:0]
	for _, p := range t.retiring {
		if !p.done && now.Before(p.deadline) {
			keep = append(keep, p)
		}
	}
	clear(t.retiring[len(keep):])
	t.retiring = keep
	return append([]*retiring(nil), keep...)
}

// judge handles a retiring pair that did not verify at failedAt before its
// deadline. tok is the simulator's token with the pair's client ID, if any.
func (t *tracker) judge(p *retiring, failedAt time.Time, tok *harness.SimToken) {
	t.mu.Lock()
	defer t.mu.Unlock()
	deleted := t.churnDeleted[p.tokenID] || t.churnDeleted["client:"+p.clientID]
	v := t.views[p.uid]
	if t.stDeleted[p.uid] {
		if v != nil && !v.deleting && p.excused != excuseDeleted { // judge sees only pairs not done
			t.deletedAhead++
		}
		v = nil // being deleted, whatever the last snapshot showed
	}
	excuse, final, cause := classify(p, v, tok, deleted, failedAt)
	// The loss may precede the successor the sampler saw: when the churn
	// corrupts a fresh secret before any snapshot shows it, the recovery's
	// secret is the first successor seen. Any loss while the pair was held
	// (from when it was first seen) explains a recovery rotation. A zone
	// token's recovery deletes the replaced token instead of displacing it.
	if lost, ok := t.secretLost[p.uid]; ok && (cause == causeDisplaced || cause == causeTokenGone) &&
		!lost.Before(p.firstSeen) && !lost.After(failedAt) {
		excuse, final = excuseSecretLost, true
	}
	switch {
	case excuse != "":
		if p.excused != excuse {
			p.excused = excuse
			t.excused[excuse]++
		}
		p.done = final
	case cause == "":
		// It verifies after all: the verify raced a change. Keep sampling.
	default:
		p.done = true
		id := p.tokenID
		if id == "" && tok != nil {
			id = tok.ID
		}
		expired := tok != nil && !tok.ExpiresAt.IsZero() && !failedAt.Before(tok.ExpiresAt)
		t.candidates = append(t.candidates, &candidate{retiring: p, failedAt: failedAt, tokenID: id, cause: cause, expired: expired})
	}
}

// classify explains why a retiring pair did not verify: an excuse (final
// when the pair can never verify again for that reason), or the cause of a
// candidate, from the simulator's state. Neither names a secret.
func classify(p *retiring, v *stView, tok *harness.SimToken, churnDeleted bool, now time.Time) (excuse string, final bool, cause string) {
	switch {
	case v == nil || v.deleting:
		return excuseDeleted, true, ""
	case churnDeleted:
		return excuseChurnDeleted, true, ""
	case !v.enabled || (tok != nil && !tok.Enabled):
		return excuseDisabled, false, "" // re-enabling brings it back: keep sampling
	case tok == nil:
		return "", false, causeTokenGone
	case !tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt):
		return "", false, fmt.Sprintf("token %s expired at %s", tok.ID, tok.ExpiresAt.UTC().Format(time.RFC3339))
	case tok.ClientSecret == p.secret:
		return "", false, ""
	case tok.PreviousClientSecret == p.secret:
		return "", false, fmt.Sprintf("Cloudflare kept it as the previous secret only until %s",
			tok.PreviousClientSecretExpiresAt.UTC().Format(time.RFC3339))
	default:
		return "", false, causeDisplaced
	}
}

// lostEvent is a RotationLost Warning event, with the span of time it covers
// (an event series repeats).
type lostEvent struct {
	ns, name    string
	first, last time.Time
}

// isLostRotate reports whether a candidate is explained by a rotate of its
// token whose response was lost: a rotate the simulator committed but
// answered with a dropped connection while this pair was current, or the
// operator announcing a lost rotation for its ServiceToken around then.
// Cloudflare keeps one previous secret, so the recovery rotation revokes the
// held one: the operator cannot help it.
func isLostRotate(c *candidate, drops []sim.Request, lost []lostEvent) bool {
	from := c.firstSeen.Add(-lostSlack)
	if c.tokenID != "" {
		path := "/service_tokens/" + c.tokenID + "/rotate"
		for _, d := range drops {
			if strings.HasSuffix(d.Path, path) && !d.Time.Before(from) && !d.Time.After(c.failedAt) {
				return true
			}
		}
	}
	for _, e := range lost {
		if e.ns == c.ns && e.name == c.name && !e.last.Before(from) && !e.first.After(c.failedAt.Add(lostEventLag)) {
			return true
		}
	}
	return false
}

// sampleLoop runs the sampler until ctx ends.
func (r *run) sampleLoop(ctx context.Context) {
	tick := time.NewTicker(samplePeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.sampleOnce(ctx)
		}
	}
}

func (r *run) sampleOnce(ctx context.Context) {
	now := time.Now()
	if views, err := r.snapshot(ctx); err == nil {
		r.cont.observe(now, views)
	} // else the API server is down (restart): keep verifying what is known
	r.verifyRetiring()
}

// snapshot reads every ServiceToken and managed Secret once.
func (r *run) snapshot(ctx context.Context) (map[types.UID]*stView, error) {
	cl := r.cp.Client
	sts := &v1alpha1.ServiceTokenList{}
	if err := cl.List(ctx, sts); err != nil {
		return nil, err
	}
	secrets := &corev1.SecretList{}
	if err := cl.List(ctx, secrets, client.MatchingLabels{v1alpha1.LabelManaged: "true"}); err != nil {
		return nil, err
	}
	now := time.Now()
	views := make(map[types.UID]*stView, len(sts.Items))
	byUID := make(map[types.UID]*v1alpha1.ServiceToken, len(sts.Items))
	effs := make(map[types.UID]v1alpha1.Effective, len(sts.Items))
	for i := range sts.Items {
		st := &sts.Items[i]
		eff, err := st.Effective()
		if err != nil {
			continue
		}
		views[st.UID] = &stView{ns: st.Namespace, name: st.Name, uid: st.UID, grace: eff.GracePeriod,
			enabled: eff.Enabled, deleting: !st.DeletionTimestamp.IsZero()}
		byUID[st.UID], effs[st.UID] = st, eff
	}
	for i := range secrets.Items {
		s := &secrets.Items[i]
		owner := metav1.GetControllerOf(s)
		if owner == nil || views[owner.UID] == nil {
			continue
		}
		st, eff, v := byUID[owner.UID], effs[owner.UID], views[owner.UID]
		// The Secret the ServiceToken designates: the spec's name once it
		// exists (after a rename), else the one its status names. A stale
		// Secret left behind by a rename is not "what the workload reads".
		rank := 0
		switch s.Name {
		case eff.SecretName:
			rank = 2
		case st.Status.SecretName:
			rank = 1
		}
		if rank <= v.rank {
			continue
		}
		if p := handedOut(s, eff, now); p != nil {
			p.ns, p.name, p.uid = st.Namespace, st.Name, st.UID
			if p.tokenID == "" {
				p.tokenID = st.Status.TokenID
			}
			v.current, v.rank = p, rank
		}
	}
	return views, nil
}

// handedOut returns the pair the Secret holds if the operator wrote it: the
// recorded hash matches the value (a value edited by hand, or a half-written
// Secret, is not a handed-out secret).
func handedOut(s *corev1.Secret, eff v1alpha1.Effective, now time.Time) *held {
	id, secret := string(s.Data[eff.ClientIDKey]), s.Data[eff.ClientSecretKey]
	if id == "" || len(secret) == 0 {
		return nil
	}
	sum := sha256.Sum256(secret)
	if s.Annotations[annotationSecretHash] != hex.EncodeToString(sum[:]) {
		return nil
	}
	return &held{pairKey: pairKey{clientID: id, secret: string(secret)}, tokenID: s.Annotations[v1alpha1.AnnotationTokenID],
		operationID: s.Annotations[annotationOperationID], firstSeen: now}
}

// verifyRetiring asks the simulator about every retiring pair inside its
// grace, and has the failures judged against the simulator's state.
func (r *run) verifyRetiring() {
	type failure struct {
		p  *retiring
		at time.Time
	}
	var failed []failure
	for _, p := range r.cont.due(time.Now()) {
		ok, err := r.sim.Verify(p.clientID, p.secret)
		at := time.Now()
		if err != nil || ok || !at.Before(p.deadline) {
			continue // no answer (no sample), verified, or the grace is over
		}
		failed = append(failed, failure{p, at})
	}
	if len(failed) == 0 {
		return
	}
	tokens, err := r.sim.Tokens()
	if err != nil {
		return // judged at the next tick, if still inside the grace
	}
	byClientID := make(map[string]*harness.SimToken, len(tokens))
	for i := range tokens {
		byClientID[tokens[i].ClientID] = &tokens[i]
	}
	for _, f := range failed {
		r.cont.judge(f.p, f.at, byClientID[f.p.clientID])
	}
}

// finishContinuity settles the candidates against the simulator's request
// log and the operator's events, and fills in the figures. A run that saw
// no successor under a grace period asserted nothing: that is a run error.
func (r *run) finishContinuity(ctx context.Context, since time.Time) error {
	c := r.cont
	c.mu.Lock()
	cands := append([]*candidate(nil), c.candidates...)
	r.res.HeldSecretsSampled, r.res.SuccessorEvents = c.sampled, c.successors
	ahead := c.deletedAhead
	for k, n := range c.excused {
		r.res.ContinuityExcused[k] = n
	}
	c.mu.Unlock()
	r.res.Violations[violationHeldRevoked] += 0
	if len(cands) > 0 {
		var log []sim.Request
		if err := r.simGet("/_sim/requests", &log); err != nil {
			return fmt.Errorf("reading the simulator's request log: %w", err)
		}
		drops := r.droppedRotates(log, since)
		lost, err := r.rotationLostEvents(ctx)
		if err != nil {
			return fmt.Errorf("listing RotationLost events: %w", err)
		}
		for _, cand := range cands {
			if cand.expired {
				// Not a revocation: the token (and with it the current secret)
				// expired because its renewal came too late. With 2-6 minute
				// tokens and the leader killed every few seconds (each kill
				// leaves the lease unheld for ~15 s), renewal windows of 40 s
				// are missed; the figure is reported on its own.
				r.res.ExpiredDuringGrace++
				r.res.ExpiryDetails = append(r.res.ExpiryDetails, describeCandidate(cand))
				continue
			}
			if isLostRotate(cand, drops, lost) {
				r.res.LostRotateRevocations++
				continue
			}
			what := describeCandidate(cand)
			if cand.cause == causeTokenGone {
				what += "; " + r.deletedBy(log, cand.tokenID)
			}
			r.violation(violationHeldRevoked, "%s", what)
		}
	}
	r.cfg.Logf("chaos: secret continuity: %d handed-out secrets sampled, %d successors under a grace period, %d candidates (%d lost rotates); "+
		"%d failures excused by a ServiceToken deletion the last snapshot did not show yet",
		r.res.HeldSecretsSampled, r.res.SuccessorEvents, len(cands), r.res.LostRotateRevocations, ahead)
	if r.res.SuccessorEvents == 0 {
		return fmt.Errorf("secret continuity: no handed-out secret was replaced under a grace period (%d sampled), so the check asserted nothing",
			r.res.HeldSecretsSampled)
	}
	return nil
}

// describeCandidate names the ServiceToken, token and times; never a secret.
func describeCandidate(c *candidate) string {
	op := ""
	if c.operationID != "" {
		op = " (issued by operation " + c.operationID + ")"
	}
	return fmt.Sprintf("%s/%s: a secret of token %s%s, first seen %s, stopped verifying at %s, %s before the end of its %s grace (successor written after %s): %s",
		c.ns, c.name, c.tokenID, op, c.firstSeen.UTC().Format(time.RFC3339), c.failedAt.UTC().Format(time.RFC3339),
		c.deadline.Sub(c.failedAt).Round(time.Second), c.grace, c.writtenAfter.UTC().Format(time.RFC3339), c.cause)
}

// deletedBy says who deleted token id through the API, from the
// simulator's request log, so that a revoked secret's report names the
// culprit: a first-cluster manager (with the credentials of which
// account), the second cluster, or nobody through the API (the churn
// deletes through /_sim).
func (r *run) deletedBy(log []sim.Request, id string) string {
	if id == "" {
		return "the token's ID is unknown"
	}
	who := map[string]string{}
	for i, ns := range append(append([]string{}, namespaces...), systemNS) {
		if i < len(r.apiTokens) {
			who[sim.CredentialID(r.apiTokens[i])] = "a first-cluster manager with the credentials of " + ns
		}
	}
	if r.second != nil {
		who[sim.CredentialID(r.second.apiToken)] = "the second cluster's manager"
	}
	var out []string
	for _, q := range log {
		if q.Op != sim.OpDelete || !strings.HasSuffix(q.Path, "/service_tokens/"+id) {
			continue
		}
		by := who[q.Credential]
		if by == "" {
			by = "an unknown credential"
		}
		out = append(out, fmt.Sprintf("DELETE at %s by %s (HTTP %d)", q.Time.UTC().Format(time.RFC3339Nano), by, q.Status))
	}
	if len(out) == 0 {
		return "no DELETE of it through the API in the simulator's request log"
	}
	return strings.Join(out, ", ")
}

// droppedRotates returns the rotates in the request log whose responses
// the simulator dropped.
func (r *run) droppedRotates(log []sim.Request, since time.Time) []sim.Request {
	if len(log) > 0 && log[0].Time.After(since) {
		r.cfg.Logf("chaos: the simulator's request log starts at %s (trimmed): earlier lost rotates cannot be matched", log[0].Time.Format(time.RFC3339))
	}
	var out []sim.Request
	for _, q := range log {
		if q.Op == sim.OpRotate && q.Fault == sim.FaultDropResponse {
			out = append(out, q)
		}
	}
	return out
}

// rotationLostEvents lists the operator's RotationLost Warning events about
// ServiceTokens, through both event APIs (the operator records through
// events.k8s.io/v1; core/v1 is the same store seen differently).
func (r *run) rotationLostEvents(ctx context.Context) ([]lostEvent, error) {
	cl := r.cp.Client
	var out []lostEvent
	add := func(ns, name string, times ...time.Time) {
		var first, last time.Time
		for _, t := range times {
			if t.IsZero() {
				continue
			}
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
		if !first.IsZero() {
			out = append(out, lostEvent{ns: ns, name: name, first: first, last: last})
		}
	}
	evs := &eventsv1.EventList{}
	if err := cl.List(ctx, evs); err != nil {
		return nil, err
	}
	for _, e := range evs.Items {
		if e.Reason != reasonRotationLost || e.Type != corev1.EventTypeWarning || e.Regarding.Kind != "ServiceToken" {
			continue
		}
		var series time.Time
		if e.Series != nil {
			series = e.Series.LastObservedTime.Time
		}
		add(e.Regarding.Namespace, e.Regarding.Name, e.EventTime.Time, series, e.DeprecatedFirstTimestamp.Time,
			e.DeprecatedLastTimestamp.Time, e.CreationTimestamp.Time)
	}
	// events.k8s.io/v1 serves core/v1 Events too: one list sees them all.
	return out, nil
}
