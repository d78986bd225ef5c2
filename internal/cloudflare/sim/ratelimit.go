package sim

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// RateLimit is a per-credential budget of Requests per Period. The zero value
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

// rateLimiter is a fixed-window counter per credential, as Cloudflare's API
// limit behaves: the window opens with a credential's first request, and once
// the budget is spent every call is refused until the window ends.
type rateLimiter struct {
	limit RateLimit

	mu      sync.Mutex
	windows map[string]*window
}

type window struct {
	start time.Time
	count int
}

func newRateLimiter(limit RateLimit) *rateLimiter {
	return &rateLimiter{limit: limit.withDefaults(), windows: map[string]*window{}}
}

// decision is the limiter's answer for one request.
type decision struct {
	allowed   bool
	remaining int
	reset     time.Duration // until the window ends
}

func (l *rateLimiter) take(key string, now time.Time) decision {
	if l.limit.Unlimited() {
		return decision{allowed: true}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.windows[key]
	if w == nil || !now.Before(w.start.Add(l.limit.Period)) {
		w = &window{start: now}
		l.windows[key] = w
	}
	w.count++
	return decision{
		allowed:   w.count <= l.limit.Requests,
		remaining: max(l.limit.Requests-w.count, 0),
		reset:     w.start.Add(l.limit.Period).Sub(now),
	}
}

// setHeaders writes the IETF-draft headers Cloudflare's API sends, e.g.
// Ratelimit: "default";r=1199;t=300 and Ratelimit-Policy: "default";q=1200;w=300.
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
