package schedule

import (
	"testing"
	"time"
)

func TestPlanRenewals(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return now.Add(d) }
	r := func(key string, renewAt, expires time.Duration, cost int) Renewal {
		return Renewal{Key: key, At: at(renewAt), Deadline: at(expires), Cost: cost}
	}
	tests := []struct {
		name     string
		in       []Renewal
		interval time.Duration
		want     map[string]time.Time
	}{
		{name: "nothing", want: map[string]time.Time{}},
		{
			name:     "sparse renewals keep their own time",
			in:       []Renewal{r("a", time.Hour, 2*time.Hour, 1), r("b", 3*time.Hour, 4*time.Hour, 1)},
			interval: time.Second,
			want:     map[string]time.Time{"a": at(time.Hour), "b": at(3 * time.Hour)},
		},
		{
			name: "a cluster denser than the budget starts early, one slot apart, in expiry order",
			in: []Renewal{
				r("c", time.Hour, time.Hour+3*time.Second, 1),
				r("a", time.Hour, time.Hour+time.Second, 1),
				r("b", time.Hour, time.Hour+2*time.Second, 1),
			},
			interval: 10 * time.Second,
			want:     map[string]time.Time{"a": at(time.Hour - 20*time.Second), "b": at(time.Hour - 10*time.Second), "c": at(time.Hour)},
		},
		{
			name: "a later renewal pulls an earlier, tighter one forward only as far as needed",
			in: []Renewal{
				r("a", time.Hour-5*time.Second, time.Hour, 1),
				r("b", time.Hour, 2*time.Hour, 1),
			},
			interval: 10 * time.Second,
			want:     map[string]time.Time{"a": at(time.Hour - 10*time.Second), "b": at(time.Hour)},
		},
		{
			name:     "a rotation costs two slots",
			in:       []Renewal{r("a", time.Hour, time.Hour+time.Second, 2), r("b", time.Hour, time.Hour+2*time.Second, 1)},
			interval: 10 * time.Second,
			want:     map[string]time.Time{"a": at(time.Hour - 20*time.Second), "b": at(time.Hour)},
		},
		{
			name: "overdue renewals stay in the past: due now",
			in: []Renewal{
				r("b", -time.Hour, 2*time.Minute, 1),
				r("a", -time.Hour, time.Minute, 1),
				r("c", time.Hour, 2*time.Hour, 1),
			},
			interval: time.Second,
			want:     map[string]time.Time{"a": at(-time.Hour - time.Second), "b": at(-time.Hour), "c": at(time.Hour)},
		},
		{
			name:     "a cluster that no longer fits is planned partly in the past (due now)",
			in:       []Renewal{r("a", time.Second, 10*time.Second, 1), r("b", time.Second, 11*time.Second, 1), r("c", time.Second, 12*time.Second, 1)},
			interval: time.Second,
			want:     map[string]time.Time{"a": at(-time.Second), "b": now, "c": at(time.Second)},
		},
		{
			name: "a token with a long renewal.before does not drag earlier-expiring ones to its time",
			in: []Renewal{
				r("short-before", 9*time.Hour, 10*time.Hour, 1),
				r("long-before", 5*time.Hour, 10*time.Hour+time.Minute, 1),
			},
			interval: time.Second,
			want:     map[string]time.Time{"short-before": at(9 * time.Hour), "long-before": at(5 * time.Hour)},
		},
		{
			name:     "a pull shorter than half a second keeps the own time (whole seconds)",
			in:       []Renewal{r("a", time.Hour, time.Hour+time.Second, 1), r("b", time.Hour, time.Hour+2*time.Second, 1), r("c", time.Hour, time.Hour+3*time.Second, 1)},
			interval: 200 * time.Millisecond,
			want:     map[string]time.Time{"a": at(time.Hour), "b": at(time.Hour), "c": at(time.Hour)},
		},
		{
			name:     "a renewal without a time is left out",
			in:       []Renewal{{Key: "forever"}, r("a", time.Hour, 2*time.Hour, 1)},
			interval: time.Second,
			want:     map[string]time.Time{"a": at(time.Hour)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlanRenewals(tt.in, tt.interval)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d planned, want %d: %v", len(got), len(tt.want), got)
			}
			for k, w := range tt.want {
				if g, ok := got[k]; !ok || !g.Equal(w) {
					t.Errorf("%s: got %s, want %s", k, g.Sub(now), w.Sub(now))
				}
			}
		})
	}
}
