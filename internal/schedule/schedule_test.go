package schedule

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestRenewalTime(t *testing.T) {
	cases := map[string]struct {
		expires time.Time
		before  time.Duration
		want    time.Time
	}{
		"renews before ahead of expiry": {t0.Add(720 * time.Hour), 240 * time.Hour, t0.Add(480 * time.Hour)},
		"a forever token never renews":  {time.Time{}, time.Hour, time.Time{}},
		// Rounding up would schedule the renewal after the moment it is due.
		"sub-second expiry truncates rather than rounds up": {t0.Add(time.Hour + 900*time.Millisecond), time.Minute, t0.Add(59 * time.Minute)},
		"one third of a year, the default":                  {t0.Add(8760 * time.Hour), 8760 * time.Hour / 3, t0.Add(5840 * time.Hour)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			NewWithT(t).Expect(RenewalTime(c.expires, c.before)).To(Equal(c.want))
		})
	}
}

func TestNextRotation(t *testing.T) {
	g := NewWithT(t)
	g.Expect(NextRotation(t0, 168*time.Hour)).To(Equal(t0.Add(168 * time.Hour)))
	g.Expect(NextRotation(t0, 0)).To(BeZero(), "routine rotation off")
	g.Expect(NextRotation(time.Time{}, time.Hour)).To(BeZero(), "nothing issued yet")
}

func TestDue(t *testing.T) {
	g := NewWithT(t)
	g.Expect(Due(t0, t0)).To(BeTrue(), "due at the instant")
	g.Expect(Due(t0, t0.Add(time.Second))).To(BeFalse())
	g.Expect(Due(t0, t0.Add(-time.Second))).To(BeTrue())
	g.Expect(Due(t0, time.Time{})).To(BeFalse(), "zero is never due")
}

func TestBackoff(t *testing.T) {
	base, max := 5*time.Second, 5*time.Minute
	cases := []struct {
		failures int32
		want     time.Duration
	}{
		{0, 0}, {-1, 0}, {1, 5 * time.Second}, {2, 10 * time.Second}, {3, 20 * time.Second},
		{6, 160 * time.Second}, {7, 5 * time.Minute}, {8, 5 * time.Minute}, {1000, 5 * time.Minute},
	}
	for _, c := range cases {
		NewWithT(t).Expect(Backoff(c.failures, base, max)).To(Equal(c.want), "failures=%d", c.failures)
	}
}

func TestRetryAt(t *testing.T) {
	g := NewWithT(t)
	g.Expect(RetryAt(t0, 3, time.Second, time.Minute)).To(Equal(t0.Add(4 * time.Second)))
	g.Expect(RetryAt(time.Time{}, 3, time.Second, time.Minute)).To(BeZero())
	g.Expect(RetryAt(t0, 0, time.Second, time.Minute)).To(BeZero())
}

func TestNext(t *testing.T) {
	cases := map[string]struct {
		ts        []time.Time
		wantAt    time.Time
		wantAfter time.Duration
		wantOK    bool
	}{
		"the earliest of several":                    {[]time.Time{t0.Add(3 * time.Hour), t0.Add(time.Hour), {}}, t0.Add(time.Hour), time.Hour, true},
		"a past time means now, not a negative wait": {[]time.Time{t0.Add(-time.Hour), t0.Add(time.Hour)}, t0.Add(-time.Hour), 0, true},
		"nothing scheduled":                          {[]time.Time{{}, {}}, time.Time{}, 0, false},
		"no times at all":                            {nil, time.Time{}, 0, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			at, after, ok := Next(t0, c.ts...)
			g.Expect(ok).To(Equal(c.wantOK))
			g.Expect(at).To(Equal(c.wantAt))
			g.Expect(after).To(Equal(c.wantAfter))
		})
	}
}

func TestBeforeExpiry(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		wait      time.Duration
		expiresAt time.Time
		want      time.Duration
	}{
		{"far from expiry the backoff stands", 5 * time.Minute, now.Add(240 * time.Hour), 5 * time.Minute},
		{"near expiry a quarter of what is left", 5 * time.Minute, now.Add(40 * time.Second), 10 * time.Second},
		{"never longer than the backoff", 2 * time.Second, now.Add(40 * time.Second), 2 * time.Second},
		{"at least the floor", time.Minute, now.Add(2 * time.Second), time.Second},
		{"no expiry", time.Minute, time.Time{}, time.Minute},
		{"already expired", time.Minute, now.Add(-time.Second), time.Minute},
	} {
		if got := BeforeExpiry(tc.wait, now, tc.expiresAt, time.Second); got != tc.want {
			t.Errorf("%s: BeforeExpiry = %s, want %s", tc.name, got, tc.want)
		}
	}
}
