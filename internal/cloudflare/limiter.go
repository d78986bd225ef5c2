package cloudflare

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

// DefaultRateLimit is Cloudflare's published per-user API budget, used when an
// account object does not set one.
var DefaultRateLimit = RateLimit{Requests: 1200, Period: 5 * time.Minute}

// DefaultMaxWait is how long a call may queue for its slot before it is
// refused with KindRateLimited instead.
const DefaultMaxWait = 2 * time.Second

// Limiter is the client-side request budget of one account, shared by every
// caller of that account. It is a token bucket with FIFO reservations: each
// caller takes the next free slot in arrival order. A caller whose slot is
// further away than the max wait is refused at once (KindRateLimited, with
// the time until its slot) without taking the slot, so a reconcile worker is
// requeued instead of parked. A 429 from Cloudflare pauses the whole account
// until its Retry-After has passed.
type Limiter struct {
	clock   clock.Clock
	budget  RateLimit
	maxWait time.Duration
	metrics recorder

	mu          sync.Mutex
	bucket      *rate.Limiter
	pausedUntil time.Time
	// paused is closed (and replaced) by Pause so queued callers wake up and
	// give their slot back instead of sending into a known 429.
	paused chan struct{}
	// promised is the next slot handed to a refused caller as its RetryAfter:
	// refused callers come back one per slot, in the order they were refused,
	// instead of all at once into the same full bucket.
	promised time.Time
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
		clock:   clk,
		budget:  budget,
		maxWait: maxWait,
		metrics: m,
		bucket:  rate.NewLimiter(r, b),
		paused:  make(chan struct{}),
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
	return l.delayLocked(l.clock.Now())
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
	tokens := l.bucket.TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(l.bucket.Limit()) * float64(time.Second))
}

// Pause stops the whole account for d (Cloudflare answered 429). Pauses only
// ever extend: a shorter Retry-After never shortens a longer one.
func (l *Limiter) Pause(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	until := l.clock.Now().Add(d)
	if until.After(l.pausedUntil) {
		l.pausedUntil = until
		close(l.paused)
		l.paused = make(chan struct{})
	}
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
	// During a pause every call is refused at once: the account is known to be
	// over Cloudflare's limit, and sleeping through it would park a worker.
	if pause := l.pausedUntil.Sub(now); pause > 0 {
		l.mu.Unlock()
		return 0, l.refuse(pause, msgPaused)
	}
	if wait := l.slotDelayLocked(now); wait > l.maxWait || !fitsDeadline(ctx, wait) {
		retry := l.promiseLocked(now, wait)
		l.mu.Unlock()
		return 0, l.refuse(retry, msgBudget)
	}
	res := l.bucket.ReserveN(now, 1)
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
		if pause := l.pauseLeft(); pause > 0 {
			l.giveBack(res)
			return 0, l.refuse(pause, msgPaused)
		}
		return delay, nil
	case <-paused:
		l.giveBack(res)
		return 0, l.refuse(l.pauseLeft(), msgPaused)
	case <-ctx.Done():
		l.giveBack(res)
		return 0, &Error{Kind: KindTransient, Message: "context done while waiting for the rate limiter", Err: ctx.Err()}
	}
}

// Admit reports whether a call made now would get its slot within the max
// wait, without taking it. When not, it returns the error Wait would return.
// Callers check it before work that must precede the call (such as recording
// an intent), so a call refused for budget costs nothing else.
func (l *Limiter) Admit() error {
	l.mu.Lock()
	now := l.clock.Now()
	if pause := l.pausedUntil.Sub(now); pause > 0 {
		l.mu.Unlock()
		return l.refuse(pause, msgPaused)
	}
	wait := l.slotDelayLocked(now)
	if wait <= l.maxWait {
		l.mu.Unlock()
		return nil
	}
	retry := l.promiseLocked(now, wait)
	l.mu.Unlock()
	return l.refuse(retry, msgBudget)
}

// promiseLocked returns how long a caller refused now should wait: until its
// own future slot, one refill interval after the slot promised before it.
func (l *Limiter) promiseLocked(now time.Time, wait time.Duration) time.Duration {
	at := now.Add(wait)
	if l.promised.After(at) {
		at = l.promised
	}
	l.promised = at.Add(time.Duration(float64(time.Second) / float64(l.bucket.Limit())))
	return at.Sub(now)
}

func (l *Limiter) pauseLeft() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.pausedUntil.Sub(l.clock.Now()), 0)
}

func (l *Limiter) giveBack(res *rate.Reservation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	res.CancelAt(l.clock.Now())
}

const (
	msgPaused = "account paused after Cloudflare answered 429"
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
