package schedule

import (
	"slices"
	"strings"
	"time"
)

// Renewal is one token's renewal as an account-wide plan sees it.
type Renewal struct {
	Key string
	// At is when the token would renew on its own (its renewal time).
	At time.Time
	// Deadline is when the token expires; it orders renewals that share an At.
	Deadline time.Time
	// Cost is how many API calls the renewal takes (at least 1).
	Cost int
}

// PlanRenewals decides when each of an account's renewals starts, given that
// the account's budget admits one call per interval. Every renewal starts no
// later than its own At and, looking at all of them together, early enough
// that the renewals after it still fit the budget before theirs: where
// renewals are denser than the budget, the whole run is pulled earlier, one
// budget slot apart. Renewals the budget can no longer start by their At
// (overdue) keep a time in the past: they are due now. Renewals with a zero
// At are left out.
//
// The order is that of the renewals' own times, then of their expiries: for
// tokens with the same renewal.before (a wave of tokens created together)
// that is expiry order. Ordering by expiry alone would let one token with a
// long renewal.before drag every token that expires just before it to its
// early time.
//
// Planned times are rounded to whole seconds, the controller's resolution: a
// run pulled earlier by less than half a second keeps its own time (the
// limiter paces it), so a plan is stable however its renewals arrive.
func PlanRenewals(rs []Renewal, interval time.Duration) map[string]time.Time {
	order := make([]Renewal, 0, len(rs))
	for _, r := range rs {
		if !r.At.IsZero() {
			order = append(order, r)
		}
	}
	slices.SortFunc(order, func(a, b Renewal) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		if c := a.Deadline.Compare(b.Deadline); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	cost := func(r Renewal) time.Duration { return time.Duration(max(r.Cost, 1)) * interval }

	start := make([]time.Time, len(order))
	// Backwards: each renewal starts by its At, and one slot before the next.
	for i := len(order) - 1; i >= 0; i-- {
		start[i] = order[i].At
		if i+1 < len(order) {
			if latest := start[i+1].Add(-cost(order[i])); latest.Before(start[i]) {
				start[i] = latest
			}
		}
	}
	// Overdue renewals keep their time in the past, so they are due at once
	// and the account's limiter paces them. (Queueing them from "now" would
	// move them later at every replan, and starve them.)
	out := make(map[string]time.Time, len(order))
	for i, r := range order {
		out[r.Key] = start[i].Round(time.Second)
	}
	return out
}
