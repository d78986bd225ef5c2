package schedule

import (
	"testing"
	"time"
)

// FuzzSchedule checks the invariants of the schedule maths for any input: no
// panic, renewal never after expiry, backoff within its bounds, Next never negative.
func FuzzSchedule(f *testing.F) {
	f.Add(int64(0), int64(time.Hour), int32(3), int64(time.Second), int64(time.Minute), "ns/name")
	f.Add(int64(1<<62), int64(-1), int32(-5), int64(0), int64(0), "")
	f.Add(int64(-1<<62), int64(1<<62), int32(1<<30), int64(1), int64(1<<62), "x")
	f.Fuzz(func(t *testing.T, expiresNs, beforeNs int64, failures int32, baseNs, maxNs int64, key string) {
		expires := time.Unix(0, expiresNs)
		before := time.Duration(beforeNs)
		if before >= 0 {
			if r := RenewalTime(expires, before); r.After(expires) {
				t.Fatalf("renewal %v after expiry %v", r, expires)
			}
			// An account's plan only ever moves a renewal earlier (up to the
			// half second its rounding to whole seconds may add).
			r := RenewalTime(expires, before)
			rs := []Renewal{{Key: key, At: r, Deadline: expires, Cost: 1}, {Key: key + "/2", At: r, Deadline: expires, Cost: 2}}
			for k, at := range PlanRenewals(rs, time.Duration(baseNs)) {
				if at.After(r.Add(time.Second / 2)) {
					t.Fatalf("%s planned at %v, after its renewal time %v", k, at, r)
				}
			}
		}
		base, max := time.Duration(baseNs), time.Duration(maxNs)
		if b := Backoff(failures, base, max); b < 0 || (base > 0 && max > 0 && b > max) {
			t.Fatalf("backoff %v outside [0, %v]", b, max)
		}
		if _, after, _ := Next(time.Unix(0, 0), expires, time.Unix(0, beforeNs)); after < 0 {
			t.Fatalf("negative wait %v", after)
		}
	})
}
