package cloudflare

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

// DefaultRateLimit is Cloudflare's published per-user API budget, used when an
// account object does not set one.
var DefaultRateLimit = RateLimit{Requests: 1200, Period: 5 * time.Minute}

// DefaultMaxWait is how long a call may queue for its slot before it is
// refused with KindRateLimited instead. It is short: a reconcile worker
// parked in the limiter serves nobody else (objects of other credentials
// included), and a refused caller keeps its place in line (see turn).
const DefaultMaxWait = 250 * time.Millisecond

// admittedWait is how long the later calls of a reconcile that already got
// a slot may wait for theirs (at least the max wait). Refusing them would
// waste the calls already made: the reconcile would start over and spend
// them again, and under load a reconcile that needs two calls in a row
// would never get both (each retry spends the first and is refused the
// second).
const admittedWait = 2 * time.Second

// lateTurn is how long past its due time a caller in line holds up the
// callers behind it. One later than that (its object is waiting in a busy
// work queue, or was deleted) lets them go, and keeps its precedence for
// when it comes back. forgetTurn is when its place is given up.
const (
	lateTurn   = time.Second
	forgetTurn = 10 * time.Minute
)

// Limiter is the client-side request budget of one Cloudflare credential,
// shared by every account object and scope that uses it (Cloudflare counts
// per user). It is a token bucket with FIFO reservations: each
// caller takes the next free slot in arrival order. A caller whose slot is
// further away than the max wait is refused at once (KindRateLimited, with
// the time to come back) without taking the slot, so a reconcile worker is
// requeued instead of parked; a named caller (WithCaller) keeps its place in
// line for when it comes back. A 429 from Cloudflare pauses the whole
// account until its Retry-After has passed.
//
// Cloudflare's Ratelimit headers steer it (Observe): the budget is shared
// with every other client of the user (Terraform, scripts, the dashboard), so
// only the headers tell what is really left. The limiter paces itself to
// spend what remains, less a reserve, by the time the window resets, and
// holds every call when the remainder is down to the reserve: exceeding
// the budget would lock the user out for five minutes.
type Limiter struct {
	clock   clock.Clock
	budget  RateLimit
	maxWait time.Duration
	metrics recorder

	mu          sync.Mutex
	bucket      *rate.Limiter
	base        rate.Limit // the configured refill rate, capped by the published policy
	baseBurst   int
	pausedUntil time.Time
	pauseMsg    string
	// steeredUntil is when the window the last Ratelimit header described
	// resets; until then the refill may be below base.
	steeredUntil time.Time
	// others estimates how fast other clients of the same user spend
	// (requests per second): what the headers show spent beyond our own
	// calls, measured over at least othersInterval.
	others    float64
	estimated bool // others holds a measurement, not just the initial zero
	// quota and window are the published policy (or the budget).
	quota  int
	window time.Duration
	mark   spendMark
	sent   int // calls admitted: our own share of what the headers count
	// paused is closed (and replaced) by Pause so queued callers wake up and
	// give their slot back instead of sending into a known 429.
	paused chan struct{}
	// promised is the next slot handed to a refused caller without a name
	// (see WithCaller) as its RetryAfter: such callers come back one per
	// slot instead of all at once into the same full bucket.
	promised time.Time
	// line holds the places of named callers that were refused, by name.
	// A named caller goes only when the callers ahead of it in line have
	// gone (or given up their place), so a caller refused once is not
	// overtaken by newcomers, and its next promise counts the callers
	// ahead of it instead of growing at the end of a chain.
	line    map[string]*turn
	nextSeq uint64
}

// turn is a named caller's place in line.
type turn struct {
	seq uint64
	due time.Time // when it was told to come back
}

type callerKey struct{}

// caller is one reconcile's identity for the limiter (see WithCaller).
type caller struct {
	name     string
	admitted bool // a call of this reconcile got its slot
}

// WithCaller names the caller of the calls made with ctx, typically one
// reconcile of one object (its namespace/name). A named caller that is
// refused keeps its place in line for its next attempt, and once one of
// its calls is admitted, the rest of the same reconcile (a rotate, then
// its refresh) does not queue behind the line again.
func WithCaller(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, callerKey{}, &caller{name: name})
}

func callerOf(ctx context.Context) *caller {
	c, _ := ctx.Value(callerKey{}).(*caller)
	return c
}

// NewLimiter builds a limiter for budget (DefaultRateLimit when unset).
// maxWait <= 0 means DefaultMaxWait; clk nil means the real clock.
func NewLimiter(budget RateLimit, maxWait time.Duration, clk clock.Clock) *Limiter {
	return newLimiter(budget, maxWait, clk, recorder{})
}

func newLimiter(budget RateLimit, maxWait time.Duration, clk clock.Clock, m recorder) *Limiter {
	budget = normalizeBudget(budget)
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	r, b := bucketFor(budget)
	return &Limiter{
		clock:     clk,
		budget:    budget,
		maxWait:   maxWait,
		metrics:   m,
		bucket:    rate.NewLimiter(r, b),
		base:      r,
		baseBurst: b,
		paused:    make(chan struct{}),
	}
}

func normalizeBudget(b RateLimit) RateLimit {
	if b.Requests <= 0 || b.Period <= 0 {
		return DefaultRateLimit
	}
	return b
}

// bucketFor sizes the bucket so that no window of length Period ever admits
// more than Requests: a burst of about 2% of the budget, and the rest spread
// evenly (refill rate (Requests-burst)/Period). Cloudflare counts requests in
// a window, so a full-budget burst followed by a full-rate refill could spend
// twice the budget in one window. The burst is small because it is taken out
// of the sustained rate, which is what bounds a cold start or a renewal wave.
func bucketFor(b RateLimit) (rate.Limit, int) {
	burst := int(math.Ceil(float64(b.Requests) / 50))
	refill := max(b.Requests-burst, 1)
	return rate.Limit(float64(refill) / b.Period.Seconds()), burst
}

// Budget returns the (normalized) budget this limiter enforces.
func (l *Limiter) Budget() RateLimit { return l.budget }

// Tokens returns the requests that could start right now without waiting
// (negative when callers are queued for future slots).
func (l *Limiter) Tokens() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if now.Before(l.pausedUntil) {
		return 0
	}
	return l.bucket.TokensAt(now)
}

// Delay returns how long a call made now would wait for its slot (including
// a pause after a 429); 0 means it would start at once.
func (l *Limiter) Delay() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	l.unsteerLocked(now)
	return l.delayLocked(now)
}

// setBudget changes the configured budget in place, keeping any pause.
func (l *Limiter) setBudget(b RateLimit) {
	b = normalizeBudget(b)
	l.mu.Lock()
	defer l.mu.Unlock()
	if b == l.budget {
		return
	}
	now := l.clock.Now()
	r, burst := bucketFor(b)
	l.budget, l.base, l.baseBurst, l.steeredUntil = b, r, burst, time.Time{}
	l.bucket.SetLimitAt(now, r)
	l.bucket.SetBurstAt(now, burst)
}

func (l *Limiter) delayLocked(now time.Time) time.Duration {
	d := l.slotDelayLocked(now)
	if p := l.pausedUntil.Sub(now); p > d {
		d = p
	}
	return d
}

// slotDelayLocked is the time until one token is available, i.e. the delay
// ReserveN would hand out, computed without taking the token.
func (l *Limiter) slotDelayLocked(now time.Time) time.Duration {
	return l.delayForLocked(now, 1)
}

// Pause stops the whole account for d (Cloudflare answered 429). Pauses only
// ever extend: a shorter Retry-After never shortens a longer one.
func (l *Limiter) Pause(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pauseLocked(l.clock.Now().Add(d), msgPaused)
}

func (l *Limiter) pauseLocked(until time.Time, msg string) {
	if until.After(l.pausedUntil) {
		l.pausedUntil, l.pauseMsg = until, msg
		close(l.paused)
		l.paused = make(chan struct{})
	}
}

// Observe reads Cloudflare's rate-limit headers from any response:
// Ratelimit: "default";r=<remaining>;t=<seconds to reset> and
// Ratelimit-Policy: "<name>";q=<quota>;w=<window seconds>. Responses
// without them change nothing.
func (l *Limiter) Observe(h http.Header) {
	remaining, reset, ok := parseRatelimit(h.Get("Ratelimit"))
	if !ok {
		return
	}
	quota, window, hasPolicy := parsePolicy(h.Get("Ratelimit-Policy"))
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if hasPolicy { // the published budget caps ours when it is smaller
		if r, _ := bucketFor(RateLimit{Requests: quota, Period: window}); r < l.base {
			l.base = r
		}
	}
	if !hasPolicy {
		quota = l.budget.Requests
	}
	if !hasPolicy {
		window = l.budget.Period
	}
	l.quota, l.window = quota, window
	l.estimateOthersLocked(now, remaining, window)
	left := remaining - reserveOf(quota)
	until := now.Add(reset)
	if left <= 0 {
		// Someone (we or another client of the user) spent the budget down to
		// the reserve: wait for the window to reset rather than cause the
		// lockout.
		l.pauseLocked(until, msgHeld)
		return
	}
	// Spend what is left evenly until the reset, less what the others are
	// expected to spend meanwhile, never faster than base, and with no bigger
	// burst than the reserve: a burst at the start of a window would take
	// what other clients of the user spend later in it. A floor keeps
	// probing, so the estimate can follow when the others slow down.
	// t is whole seconds, rounded up: on average the window ends half a
	// second earlier than it says.
	even := float64(left) / max(reset.Seconds()-0.5, 0.5)
	target := rate.Limit(max(even-l.others, even/20))
	if !l.estimated {
		// Nobody's spending measured yet: take half until it is, so a heavy
		// consumer met at startup cannot make us overrun the window.
		target = rate.Limit(even / 2)
	}
	l.steeredUntil = until
	l.bucket.SetLimitAt(now, min(l.base, target))
	l.bucket.SetBurstAt(now, max(1, min(l.baseBurst, reserveOf(quota))))
}

// spendMark is the start of one measurement of the others' spending.
type spendMark struct {
	at        time.Time
	remaining int
	sent      int
}

// othersInterval is the shortest span the others' spending is measured
// over: a tenth of the window, from 1 to 5 seconds.
func othersInterval(window time.Duration) time.Duration {
	return min(max(window/10, time.Second), 5*time.Second)
}

// estimateOthersLocked updates the others' spending rate from one answer.
// Calls are counted when admitted, so one still in flight is not taken for
// someone else's.
func (l *Limiter) estimateOthersLocked(now time.Time, remaining int, window time.Duration) {
	m := l.mark
	if m.at.IsZero() || remaining > m.remaining { // first answer, or a new window
		l.mark = spendMark{at: now, remaining: remaining, sent: l.sent}
		return
	}
	elapsed := now.Sub(m.at)
	if elapsed < othersInterval(window) {
		return
	}
	spent := (m.remaining - remaining) - (l.sent - m.sent)
	rate := float64(max(spent, 0)) / elapsed.Seconds()
	if l.estimated {
		rate = (l.others + rate) / 2 // smooth: one busy interval is not a trend
	}
	l.others, l.estimated = rate, true
	l.mark = spendMark{at: now, remaining: remaining, sent: l.sent}
}

// unsteerLocked restores the base rate once the window the headers
// described has reset (the next response steers again).
func (l *Limiter) unsteerLocked(now time.Time) {
	if !l.steeredUntil.IsZero() && !now.Before(l.steeredUntil) {
		l.steeredUntil = time.Time{}
		l.bucket.SetLimitAt(now, l.base)
		l.bucket.SetBurstAt(now, l.baseBurst)
	}
}

// reserveOf is the part of a quota the limiter never spends: requests in
// flight when a header was sent, and room for a person in the dashboard: 2%
// of the quota, at least 3 calls.
func reserveOf(quota int) int { return max(int(math.Ceil(float64(quota)/50)), 3) }

// parseRatelimit reads r and t of the first item of a Ratelimit header.
func parseRatelimit(v string) (remaining int, reset time.Duration, ok bool) {
	params := headerParams(v)
	r, okR := params["r"]
	t, okT := params["t"]
	if !okR || !okT || r < 0 || t < 0 {
		return 0, 0, false
	}
	return r, time.Duration(t) * time.Second, true
}

// parsePolicy reads q and w of the first item of a Ratelimit-Policy header.
func parsePolicy(v string) (quota int, window time.Duration, ok bool) {
	params := headerParams(v)
	q, okQ := params["q"]
	w, okW := params["w"]
	if !okQ || !okW || q <= 0 || w <= 0 {
		return 0, 0, false
	}
	return q, time.Duration(w) * time.Second, true
}

// headerParams parses the integer parameters of the first member of a
// structured-field list such as "default";r=50;t=30.
func headerParams(v string) map[string]int {
	first, _, _ := strings.Cut(v, ",")
	out := map[string]int{}
	for i, part := range strings.Split(first, ";") {
		if i == 0 {
			continue // the item's name
		}
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(val)); err == nil {
			out[strings.ToLower(strings.TrimSpace(k))] = n
		}
	}
	return out
}

// Wait admits one request, waiting at most the max wait for its slot. It
// returns *Error with KindRateLimited (RetryAfter set) when the account is
// paused or the slot is too far away (or beyond ctx's deadline); in both
// cases no slot is consumed.
func (l *Limiter) Wait(ctx context.Context) error {
	waited, err := l.wait(ctx)
	if err != nil {
		return err
	}
	l.metrics.limiterWait(waited)
	return nil
}

func (l *Limiter) wait(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, &Error{Kind: KindTransient, Message: "context done before the request", Err: err}
	}
	l.mu.Lock()
	now := l.clock.Now()
	l.unsteerLocked(now)
	// During a pause every call is refused at once: the account is known to be
	// over Cloudflare's limit, and sleeping through it would park a worker.
	if pause := l.pausedUntil.Sub(now); pause > 0 {
		msg := l.pauseMsg
		l.keepTurnLocked(ctx)
		l.mu.Unlock()
		return 0, l.refuse(pause, msg)
	}
	if retry, ok := l.turnLocked(ctx, now); !ok {
		l.mu.Unlock()
		return 0, l.refuse(retry, msgBudget)
	}
	if c := callerOf(ctx); c != nil {
		delete(l.line, c.name)
		c.admitted = true
	}
	res := l.bucket.ReserveN(now, 1)
	l.sent++
	paused := l.paused
	delay := res.DelayFrom(now)
	l.mu.Unlock()
	if delay <= 0 {
		return 0, nil
	}

	timer := l.clock.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C():
		if pause, msg := l.pauseLeft(); pause > 0 {
			l.giveBack(res)
			return 0, l.refuse(pause, msg)
		}
		return delay, nil
	case <-paused:
		l.giveBack(res)
		pause, msg := l.pauseLeft()
		return 0, l.refuse(pause, msg)
	case <-ctx.Done():
		l.giveBack(res)
		return 0, &Error{Kind: KindTransient, Message: "context done while waiting for the rate limiter", Err: ctx.Err()}
	}
}

// Admit reports whether a call made now would get its slot within the max
// wait, without taking it. When not, it returns the error Wait would return.
// Callers check it before work that must precede the call (such as recording
// an intent), so a call refused for budget costs nothing else.
func (l *Limiter) Admit(ctx context.Context) error {
	l.mu.Lock()
	now := l.clock.Now()
	l.unsteerLocked(now)
	if pause := l.pausedUntil.Sub(now); pause > 0 {
		msg := l.pauseMsg
		l.keepTurnLocked(ctx)
		l.mu.Unlock()
		return l.refuse(pause, msg)
	}
	retry, ok := l.turnLocked(ctx, now)
	l.mu.Unlock()
	if ok {
		return nil
	}
	return l.refuse(retry, msgBudget)
}

// turnLocked decides whether a call made now may take its slot (within the
// max wait and ctx's deadline). When not, it returns how long the caller
// should wait before it tries again, and a named caller keeps (or takes) its
// place in line.
func (l *Limiter) turnLocked(ctx context.Context, now time.Time) (time.Duration, bool) {
	c := callerOf(ctx)
	if c == nil || c.admitted {
		// Unnamed callers (account checks, lists) are few and go first; so
		// does the rest of a reconcile that already got a slot, which may
		// wait longer for it.
		wait, most := l.delayForLocked(now, 1), l.maxWait
		if c != nil {
			most = max(most, admittedWait)
		}
		if wait <= most && fitsDeadline(ctx, wait) {
			return 0, true
		}
		return l.promiseLocked(now, wait), false
	}
	blocking, ahead, mine := l.aheadLocked(now, c.name)
	wait := l.delayForLocked(now, float64(blocking+1))
	if wait <= l.maxWait && fitsDeadline(ctx, wait) {
		return 0, true
	}
	if mine == nil {
		mine = &turn{seq: l.nextSeq}
		l.nextSeq++
		if l.line == nil {
			l.line = map[string]*turn{}
		}
		l.line[c.name] = mine
	}
	// Come back when the callers ahead should have gone, at the rate the
	// credentials can sustain (the steered rate of the moment may be low):
	// one who comes back too early is told again, and keeps its place.
	retry := l.delayForLocked(now, 1) + time.Duration(float64(ahead)/float64(l.promiseRateLocked())*float64(time.Second))
	mine.due = now.Add(retry)
	return retry, false
}

// keepTurnLocked keeps a named caller's place through a pause: it is told
// to come back when the pause ends, and is due then.
func (l *Limiter) keepTurnLocked(ctx context.Context) {
	if c := callerOf(ctx); c != nil {
		if t := l.line[c.name]; t != nil && t.due.Before(l.pausedUntil) {
			t.due = l.pausedUntil
		}
	}
}

// aheadLocked looks at the places in line ahead of name's (all of them when
// name has none) and returns name's place. ahead counts those still to
// come; blocking counts those due now, whose slots are theirs: a caller not
// yet due, or later than lateTurn, does not hold up the ones behind it.
func (l *Limiter) aheadLocked(now time.Time, name string) (blocking, ahead int, mine *turn) {
	mine = l.line[name]
	for n, t := range l.line {
		late := now.Sub(t.due)
		if late > forgetTurn {
			delete(l.line, n)
			continue
		}
		if n == name || (mine != nil && t.seq > mine.seq) || late > lateTurn {
			continue
		}
		ahead++
		if late >= 0 {
			blocking++
		}
	}
	if mine != nil && l.line[name] == nil { // forgotten: a newcomer again
		return l.aheadLocked(now, name)
	}
	return blocking, ahead, mine
}

// delayForLocked is the time until n tokens are available, i.e. the delay
// of the n-th of n reservations made now, computed without taking them.
func (l *Limiter) delayForLocked(now time.Time, n float64) time.Duration {
	tokens := l.bucket.TokensAt(now)
	if tokens >= n {
		return 0
	}
	return time.Duration((n - tokens) / float64(l.bucket.Limit()) * float64(time.Second))
}

// promiseLocked returns how long an unnamed caller refused now should wait:
// until its own future slot, one refill interval after the slot promised
// before it.
func (l *Limiter) promiseLocked(now time.Time, wait time.Duration) time.Duration {
	at := now.Add(wait)
	if l.promised.After(at) {
		at = l.promised
	}
	l.promised = at.Add(time.Duration(float64(time.Second) / float64(l.promiseRateLocked())))
	return at.Sub(now)
}

// promiseRateLocked is the rate refused callers are promised slots at: the
// rate this limiter can sustain, not the steered rate of the moment. Slots
// are promised far ahead, and a moment's low rate (the end of a window,
// before the others are measured) would space them all too far apart.
func (l *Limiter) promiseRateLocked() rate.Limit {
	if l.quota <= 0 || l.window <= 0 {
		return l.bucket.Limit()
	}
	sustained := float64(l.quota-reserveOf(l.quota))/l.window.Seconds() - l.others
	return min(l.base, rate.Limit(max(sustained, float64(l.base)/20)))
}

func (l *Limiter) pauseLeft() (time.Duration, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.pausedUntil.Sub(l.clock.Now()), 0), l.pauseMsg
}

func (l *Limiter) giveBack(res *rate.Reservation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent--
	res.CancelAt(l.clock.Now())
}

const (
	msgPaused = "credentials paused after Cloudflare answered 429"
	msgHeld   = "Cloudflare's Ratelimit header shows the user's budget nearly spent (by this operator or other clients of the same user); waiting for the window to reset"
	msgBudget = "client-side rate limit: budget spent"
)

func (l *Limiter) refuse(retryAfter time.Duration, msg string) error {
	l.metrics.rateLimited("client")
	return &Error{Kind: KindRateLimited, Message: msg, RetryAfter: max(retryAfter, time.Millisecond)}
}

// fitsDeadline reports whether a wait ends before ctx's deadline. Deadlines
// are wall-clock, so this uses real time even when l.clock is fake.
func fitsDeadline(ctx context.Context, wait time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || wait == 0 || wait <= time.Until(dl)
}

// State describes the limiter for a debug log line: what a refusal was
// based on. It holds no credential.
func (l *Limiter) State() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	return fmt.Sprintf("tokens=%.2f rate=%.3f/s burst=%d line=%d paused=%s steered=%s others=%.3f/s estimated=%t quota=%d",
		l.bucket.TokensAt(now), float64(l.bucket.Limit()), l.bucket.Burst(), len(l.line),
		max(l.pausedUntil.Sub(now), 0).Round(time.Millisecond), max(l.steeredUntil.Sub(now), 0).Round(time.Second),
		l.others, l.estimated, l.quota)
}
