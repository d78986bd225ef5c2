// Package schedule holds the time maths of a ServiceToken's life as pure
// functions: when to renew, when routine rotation is due, when a grace period
// ends, how long to back off after failures, and when to look again. The
// controller passes "now" in from its clock; nothing here reads the time.
package schedule

import "time"

// RenewalTime is when a token that expires at expiresAt should be renewed:
// before ahead of expiry, truncated to whole seconds (status timestamps have
// second precision; rounding up would renew a moment late). A zero expiresAt
// (a "forever" token) never renews: zero.
func RenewalTime(expiresAt time.Time, before time.Duration) time.Time {
	if expiresAt.IsZero() {
		return time.Time{}
	}
	return expiresAt.Add(-before).Truncate(time.Second)
}

// NextRotation is when routine rotation is next due: every after the last
// secret was issued. Zero when routine rotation is off or nothing was issued yet.
func NextRotation(lastRotation time.Time, every time.Duration) time.Time {
	if every <= 0 || lastRotation.IsZero() {
		return time.Time{}
	}
	return lastRotation.Add(every)
}

// Due reports whether a scheduled time has been reached. Zero is never due.
func Due(now, at time.Time) bool {
	return !at.IsZero() && !now.Before(at)
}

// Backoff is the wait after failures consecutive failures: base doubling per
// failure, capped at max. No failures (or no positive base and max), no wait.
func Backoff(failures int32, base, max time.Duration) time.Duration {
	if failures <= 0 || base <= 0 || max <= 0 {
		return 0
	}
	d := base
	for i := int32(1); i < failures; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	if d > max {
		return max
	}
	return d
}

// BeforeExpiry caps a retry wait so that a failing token still gets several
// tries before it expires: at most a quarter of the time left (but not less
// than floor). A token with no expiry, or already expired, keeps wait.
func BeforeExpiry(wait time.Duration, now, expiresAt time.Time, floor time.Duration) time.Duration {
	if expiresAt.IsZero() || !now.Before(expiresAt) {
		return wait
	}
	return min(wait, max(expiresAt.Sub(now)/4, floor))
}

// RetryAt is when a failing object may be retried: its last failure plus the
// backoff for its failure count. Persisted in status, it survives restarts.
func RetryAt(lastFailure time.Time, failures int32, base, max time.Duration) time.Time {
	if lastFailure.IsZero() || failures <= 0 {
		return time.Time{}
	}
	return lastFailure.Add(Backoff(failures, base, max))
}

// Next returns the earliest non-zero time in ts and how long from now until
// it, never negative (a time in the past means "now", not a spin). ok is false
// when every time is zero.
func Next(now time.Time, ts ...time.Time) (at time.Time, after time.Duration, ok bool) {
	for _, t := range ts {
		if t.IsZero() {
			continue
		}
		if !ok || t.Before(at) {
			at, ok = t, true
		}
	}
	if !ok {
		return time.Time{}, 0, false
	}
	if after = at.Sub(now); after < 0 {
		after = 0
	}
	return at, after, true
}
