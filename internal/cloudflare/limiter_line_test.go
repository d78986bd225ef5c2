package cloudflare

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// lineWorld plays many named callers against one limiter on a fake clock:
// each needs a call now and then, comes back when told (plus a random
// work-queue delay), and some give up their place (their object was
// deleted). Cloudflare is a fixed window of the budget that answers with
// Ratelimit headers, and now and then a 429 pauses the credentials. Demand
// stays well under the budget, so every caller that keeps coming back must
// get its call soon: the line may order callers, never strand one.
type lineWorld struct {
	rnd    *rand.Rand
	clk    *clocktesting.FakeClock
	lim    *Limiter
	budget RateLimit

	windowStart time.Time
	windowCount int
}

type lineCaller struct {
	name      string
	admitted  context.Context // Admit said yes: the call follows (after the intent is written)
	next      time.Time       // when it calls next
	waiting   bool            // refused at least once for the current need
	needSince time.Time
}

// respond is what Cloudflare answers one admitted call: its Ratelimit
// headers, counted in a fixed window that opens with a call.
func (w *lineWorld) respond(now time.Time) http.Header {
	if w.windowStart.IsZero() || !now.Before(w.windowStart.Add(w.budget.Period)) {
		w.windowStart, w.windowCount = now, 0
	}
	w.windowCount++
	h := http.Header{}
	reset := w.windowStart.Add(w.budget.Period).Sub(now)
	h.Set("Ratelimit", fmt.Sprintf(`"default";r=%d;t=%d`, max(w.budget.Requests-w.windowCount, 0), int((reset+time.Second-1)/time.Second)))
	h.Set("Ratelimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, w.budget.Requests, int(w.budget.Period/time.Second)))
	return h
}

func TestLimiterLineStrandsNobody(t *testing.T) {
	// 60 callers needing a call every 5 s plus up to gap ask for 1.9 to 3.6
	// calls a second of a budget of 3.9, and come back up to late after
	// their time (a busy work queue). Nobody should wait long; a caller
	// stranded in line would wait until the end of the run.
	for _, c := range []struct{ gapMS, lateMS, admitMS int }{{55_000, 2000, 50}, {20_000, 10_000, 1000}, {15_000, 5000, 500}} {
		for seed := uint64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("gap %dms late %dms admit %dms seed %d", c.gapMS, c.lateMS, c.admitMS, seed), func(t *testing.T) {
				worst, overBudget := playLine(t, seed, c.gapMS, c.lateMS, c.admitMS)
				t.Logf("longest wait of a caller that kept coming back: %s", worst)
				if overBudget {
					t.Errorf("the limiter let more than the budget through in one window")
				}
				if worst > time.Minute {
					t.Errorf("a caller waited %s for its call with demand under the budget", worst)
				}
			})
		}
	}
}

func playLine(t *testing.T, seed uint64, gapMS, lateMS, admitMS int) (worst time.Duration, overBudget bool) {
	t.Helper()
	clk := clocktesting.NewFakeClock(testEpoch)
	budget := DefaultRateLimit
	w := &lineWorld{rnd: rand.New(rand.NewPCG(seed, seed*7919)), clk: clk, budget: budget,
		// A max wait of 1ns admits only calls whose slot is there now, so no
		// Wait ever sleeps on the fake clock.
		lim: NewLimiter(budget, time.Nanosecond, clk)}
	callers := make([]*lineCaller, 60)
	for i := range callers {
		callers[i] = &lineCaller{name: fmt.Sprintf("ns/st-%02d", i), next: testEpoch.Add(time.Duration(w.rnd.IntN(5000)) * time.Millisecond)}
	}
	const tick = 50 * time.Millisecond
	end := testEpoch.Add(30 * time.Minute)
	for now := testEpoch; now.Before(end); now = now.Add(tick) {
		clk.SetTime(now)
		if w.rnd.Float64() < tick.Seconds()/20 { // a 429 about every 20 s
			w.lim.Pause(time.Second)
		}
		if now.Sub(testEpoch)%(30*time.Second) == 0 { // the drift check's list, unnamed
			if w.lim.Wait(context.Background()) == nil {
				w.lim.Observe(w.respond(now))
			}
		}
		for _, c := range callers {
			if now.Before(c.next) {
				continue
			}
			if !c.waiting {
				c.needSince = now
			}
			var err error
			if c.admitted == nil {
				ctx := WithCaller(context.Background(), c.name)
				if err = w.lim.Admit(ctx); err == nil {
					// The intent is written to the API server before the call.
					c.admitted, c.next = ctx, now.Add(time.Duration(w.rnd.IntN(admitMS))*time.Millisecond)
					continue
				}
			} else {
				err = w.lim.Wait(c.admitted)
				c.admitted = nil
			}
			if err == nil {
				w.lim.Observe(w.respond(now))
				if w.windowCount > budget.Requests {
					overBudget = true
				}
				if c.waiting {
					worst = max(worst, now.Sub(c.needSince))
				}
				c.waiting = false
				c.next = now.Add(5*time.Second + time.Duration(w.rnd.IntN(gapMS))*time.Millisecond)
				continue
			}
			if KindOf(err) != KindRateLimited {
				t.Fatalf("%s: unexpected error %v", c.name, err)
			}
			if w.rnd.Float64() < 0.05 { // deleted meanwhile: comes back as a new object later
				c.name += "'"
				c.waiting = false
				c.next = now.Add(time.Duration(w.rnd.IntN(30_000)) * time.Millisecond)
				continue
			}
			c.waiting = true
			// The work queue hands it back when told, or up to 2 s later.
			c.next = now.Add(RetryAfterOf(err) + time.Duration(w.rnd.IntN(lateMS))*time.Millisecond)
		}
	}
	for _, c := range callers {
		if c.waiting {
			worst = max(worst, end.Sub(c.needSince))
		}
	}
	return worst, overBudget
}
