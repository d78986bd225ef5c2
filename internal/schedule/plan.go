package schedule

import (
	"slices"
	"time"
)

// Renewal is one token's renewal as an account-wide plan sees it.
type Renewal struct {
	Key string
	// At is when the token would renew on its own (its renewal time).
	At time.Time
	// Deadline is when the token expires. Renewals run in deadline order.
	Deadline time.Time
	// Cost is how many API calls the renewal takes (at least 1).
	Cost int
}

// PlanRenewals decides when each of an account's renewals starts, given that
// the account's budget admits one call per interval. Every renewal starts no
// later than its own At and, looking at all of them together, early enough
// that the renewals after it (in expiry order) still fit the budget before
// theirs: where renewals are denser than the budget, the whole run is pulled
// earlier, one budget slot apart. Renewals the budget can no longer start by
// their At (overdue) keep a time in the past: they are due now. Renewals
// with a zero At are left out.
func PlanRenewals(rs []Renewal, interval time.Duration) map[string]time.Time {
	order := make([]Renewal, 0, len(rs))
	for _, r := range rs {
		if !r.At.IsZero() {
			order = append(order, r)
		}
	}
	slices.SortFunc(order, func(a, b Renewal) int {
		if c := a.Deadline.Compare(b.Deadline); c != 0 {
			return c
		}
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
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
	// move them later at every replan, and starve them.) Times are truncated
	// to the second: the controller compares them with a truncated clock.
	out := make(map[string]time.Time, len(order))
	for i, r := range order {
		out[r.Key] = start[i].Truncate(time.Second)
	}
	return out
}
