package sim

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RateLimit is a per-user budget of Requests per Period. The zero value
// means Cloudflare's 1200 per 5 minutes; a negative Requests means unlimited.
type RateLimit struct {
	Requests int
	Period   time.Duration
}

// Unlimited reports whether the budget is switched off.
func (r RateLimit) Unlimited() bool { return r.Requests < 0 }

func (r RateLimit) withDefaults() RateLimit {
	if r.Requests == 0 {
		r.Requests = 1200
	}
	if r.Period <= 0 {
		r.Period = 5 * time.Minute
	}
	return r
}

// DefaultLockout is how long Cloudflare blocks a user who exceeded the
// budget.
const DefaultLockout = 5 * time.Minute

// OutsideConsumer is another client of a user's budget (the dashboard, a
// script, another operator): it spends Fraction of the user's budget evenly
// over every window. Fractions for the same user add up.
type OutsideConsumer struct {
	// User is the user name (an APIToken's User or the token itself, an
	// APIKey's Email); empty means every user.
	User     string
	Fraction float64
}

// rateLimiter is a fixed-window counter per user. A window opens with a
// user's first request; spending more than the budget in it locks the user
// out for the lockout period, and a fresh window opens when that ends.
type rateLimiter struct {
	limit    RateLimit
	lockout  time.Duration
	outside  map[string]float64 // user key → fraction
	everyone float64            // fraction spent for every user

	mu    sync.Mutex
	users map[string]*budget
}

type budget struct {
	start       time.Time // of the window; zero before the first request
	count       int       // requests and SpendBudget charges in the window
	lockedUntil time.Time
	outside     float64 // fraction of each window spent by outside consumers
}

func newRateLimiter(limit RateLimit, lockout time.Duration, outside []OutsideConsumer) *rateLimiter {
	if lockout <= 0 {
		lockout = DefaultLockout
	}
	l := &rateLimiter{limit: limit.withDefaults(), lockout: lockout, outside: map[string]float64{}, users: map[string]*budget{}}
	for _, c := range outside {
		f := max(c.Fraction, 0)
		if c.User == "" {
			l.everyone += f
		} else {
			l.outside[userKey(c.User)] += f
		}
	}
	return l
}

// decision is the limiter's answer for one request.
type decision struct {
	allowed   bool
	remaining int
	// reset is the time until the window ends, or when refused until the
	// lockout ends.
	reset time.Duration
	// lockedOut: this request exceeded the budget and started a lockout.
	lockedOut bool
}

func (l *rateLimiter) take(user string, now time.Time) decision {
	if l.limit.Unlimited() {
		return decision{allowed: true}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.charge(user, 1, now)
}

// spend charges n requests made by some other client of the user.
func (l *rateLimiter) spend(user string, n int, now time.Time) decision {
	if l.limit.Unlimited() || n <= 0 {
		return decision{allowed: true}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.charge(user, n, now)
}

// charge spends n requests of the user's budget. The caller holds l.mu.
func (l *rateLimiter) charge(user string, n int, now time.Time) decision {
	b := l.users[user]
	if b == nil {
		b = &budget{outside: l.everyone + l.outside[user]}
		l.users[user] = b
	}
	if now.Before(b.lockedUntil) {
		// Refused calls do not count: nothing gets through until the end.
		return decision{reset: b.lockedUntil.Sub(now)}
	}
	if at, over := l.crossedByOutside(b, now); over {
		// Outside consumers kept spending while nobody here called: the
		// user went over at that moment and has been locked out since.
		b.lockedUntil = at.Add(l.lockout)
		b.start, b.count = b.lockedUntil, 0
		if now.Before(b.lockedUntil) {
			return decision{reset: b.lockedUntil.Sub(now), lockedOut: true}
		}
		d := l.charge(user, n, now)
		d.lockedOut = true
		return d
	}
	if b.start.IsZero() || !now.Before(b.start.Add(l.limit.Period)) {
		b.start, b.count = now, 0
	}
	b.count += n
	used := b.count + l.outsideSpent(b, now)
	if used > l.limit.Requests {
		b.lockedUntil = now.Add(l.lockout)
		b.start, b.count = b.lockedUntil, 0
		return decision{reset: l.lockout, lockedOut: true}
	}
	return decision{allowed: true, remaining: l.limit.Requests - used, reset: b.start.Add(l.limit.Period).Sub(now)}
}

// crossedByOutside reports whether outside spending alone pushed b's current
// window over the budget before now, and when.
func (l *rateLimiter) crossedByOutside(b *budget, now time.Time) (time.Time, bool) {
	if b.outside <= 0 || b.start.IsZero() {
		return time.Time{}, false
	}
	need := l.limit.Requests - b.count + 1 // outside requests that exceed the budget
	perWindow := b.outside * float64(l.limit.Requests)
	if need <= 0 || float64(need) > perWindow+1e-9 {
		return time.Time{}, false
	}
	at := b.start.Add(time.Duration(math.Ceil(float64(need) / perWindow * float64(l.limit.Period))))
	return at, !at.After(now) && at.Before(b.start.Add(l.limit.Period))
}

// outsideSpent is what outside consumers have spent of the current window
// by now: computed from the clock, so a fake clock makes it deterministic.
func (l *rateLimiter) outsideSpent(b *budget, now time.Time) int {
	if b.outside <= 0 {
		return 0
	}
	elapsed := min(max(now.Sub(b.start), 0), l.limit.Period)
	// The epsilon keeps exact products (0.5 × 1200 × 1/2) from flooring
	// one short through rounding.
	return int(math.Floor(b.outside*float64(l.limit.Requests)*float64(elapsed)/float64(l.limit.Period) + 1e-9))
}

// setHeaders writes the IETF-draft headers Cloudflare's API sends, e.g.
// Ratelimit: "default";r=1199;t=300 and Ratelimit-Policy: "default";q=1200;w=300.
// A refused request shows r=0 and the lockout left as t and Retry-After.
func (l *rateLimiter) setHeaders(h http.Header, d decision) {
	if l.limit.Unlimited() {
		return
	}
	h.Set("Ratelimit", fmt.Sprintf(`"default";r=%d;t=%d`, d.remaining, ceilSeconds(d.reset)))
	h.Set("Ratelimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, l.limit.Requests, ceilSeconds(l.limit.Period)))
	if !d.allowed {
		h.Set("Retry-After", strconv.Itoa(max(ceilSeconds(d.reset), 1)))
	}
}

func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}
