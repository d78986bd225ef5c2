package cloudflare

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
)

// waitFor polls cond in real time; it only synchronizes with goroutines the
// fake clock released, it never measures anything.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func TestBucketSizing(t *testing.T) {
	g := NewWithT(t)
	r, b := bucketFor(RateLimit{Requests: 1200, Period: 5 * time.Minute})
	g.Expect(b).To(Equal(24))
	g.Expect(float64(r)).To(BeNumerically("~", 1176.0/300, 1e-9))
	r, b = bucketFor(RateLimit{Requests: 1, Period: time.Minute})
	g.Expect(b).To(Equal(1))
	g.Expect(float64(r)).To(BeNumerically("~", 1.0/60, 1e-9))
	g.Expect(NewLimiter(RateLimit{}, 0, nil).Budget()).To(Equal(DefaultRateLimit))
}

// 50 concurrent callers against a budget of 10 per second: in no window of
// one second are more than 10 admitted, and everyone is admitted in the end.
func TestLimiterNeverExceedsBudgetUnderConcurrency(t *testing.T) {
	g := NewWithT(t)
	const callers, requests = 50, 10
	period := time.Second
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: requests, Period: period}, time.Hour, clk)

	var mu sync.Mutex
	var admitted []time.Time
	var errs []error
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(admitted) + len(errs) }
	for range callers {
		go func() {
			err := lim.Wait(context.Background())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			// The test steps the clock only once every released caller has
			// recorded, so this is the step at which this caller was let go.
			admitted = append(admitted, clk.Now())
		}()
	}
	// Every caller is either through or parked on a timer of the fake clock.
	settled := func() bool { return count()+clk.Waiters() == callers }
	waitFor(t, "callers to queue", settled)
	step := period / 20
	for count() < callers {
		clk.Step(step)
		waitFor(t, "released callers", settled)
		g.Expect(clk.Since(testEpoch)).To(BeNumerically("<", time.Minute), "the queue stopped draining")
	}

	g.Expect(errs).To(BeEmpty())
	g.Expect(admitted).To(HaveLen(callers))
	sort.Slice(admitted, func(i, j int) bool { return admitted[i].Before(admitted[j]) })
	for i, start := range admitted {
		n := 0
		for _, at := range admitted[i:] {
			if at.Sub(start) < period {
				n++
			}
		}
		g.Expect(n).To(BeNumerically("<=", requests), "window starting at %s", start.Sub(testEpoch))
	}
	// And the budget is actually used, not starved: 50 calls at ~9/s.
	g.Expect(admitted[callers-1].Sub(testEpoch)).To(BeNumerically("<", 6*time.Second))
}

func TestLimiterBoundedWaitRefusesWithoutSleepingOrConsuming(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	// burst 1, then one slot per second.
	lim := NewLimiter(RateLimit{Requests: 2, Period: time.Second}, 100*time.Millisecond, clk)
	ctx := context.Background()
	g.Expect(lim.Wait(ctx)).To(Succeed())
	before := lim.Tokens()

	// The fake clock never moves here: had Wait slept, it would never return.
	err := lim.Wait(ctx)
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	g.Expect(RetryAfterOf(err)).To(Equal(time.Second))
	g.Expect(lim.Tokens()).To(Equal(before), "a refused call does not take the slot")
	g.Expect(clk.HasWaiters()).To(BeFalse())

	clk.Step(time.Second)
	g.Expect(lim.Delay()).To(BeZero())
	g.Expect(lim.Wait(ctx)).To(Succeed())
}

func TestLimiterRefusesBeyondContextDeadline(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: 2, Period: time.Second}, time.Hour, clk)
	g.Expect(lim.Wait(context.Background())).To(Succeed())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	g.Expect(KindOf(lim.Wait(ctx))).To(Equal(KindRateLimited))
	g.Expect(clk.HasWaiters()).To(BeFalse())
}

func TestLimiterFIFO(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: 2, Period: time.Second}, time.Hour, clk)
	g.Expect(lim.Wait(context.Background())).To(Succeed())

	var mu sync.Mutex
	var order []int
	for i := range 3 {
		go func() {
			if err := lim.Wait(context.Background()); err != nil {
				i = -1 - i
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
		}()
		// Caller i queues before caller i+1 arrives.
		waitFor(t, "caller to queue", func() bool { return clk.Waiters() == i+1 })
	}
	done := func() int { mu.Lock(); defer mu.Unlock(); return len(order) }
	for want := 1; want <= 3; want++ {
		clk.Step(time.Second)
		waitFor(t, "next caller", func() bool { return done() == want })
	}
	g.Expect(order).To(Equal([]int{0, 1, 2}))
}

func TestLimiterPause(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: 100, Period: time.Second}, time.Minute, clk)
	ctx := context.Background()

	lim.Pause(30 * time.Second)
	lim.Pause(5 * time.Second) // a shorter Retry-After never shortens a pause
	err := lim.Wait(ctx)
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	g.Expect(RetryAfterOf(err)).To(Equal(30*time.Second), "refused at once, even though max wait is a minute")
	g.Expect(lim.Delay()).To(Equal(30 * time.Second))
	g.Expect(lim.Tokens()).To(BeZero())

	clk.Step(30 * time.Second)
	g.Expect(lim.Wait(ctx)).To(Succeed())
}

// A caller already queued for its slot is released with KindRateLimited when
// a 429 pauses the account, and gives its slot back.
func TestLimiterPauseReleasesQueuedCallers(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: 2, Period: time.Second}, time.Minute, clk)
	g.Expect(lim.Wait(context.Background())).To(Succeed())
	tokens := lim.Tokens()

	result := make(chan error, 1)
	go func() { result <- lim.Wait(context.Background()) }()
	waitFor(t, "caller to queue", func() bool { return clk.Waiters() == 1 })
	g.Expect(lim.Tokens()).To(BeNumerically("<", tokens), "the queued caller holds a slot")

	lim.Pause(time.Minute)
	var err error
	waitFor(t, "queued caller to return", func() bool {
		select {
		case err = <-result:
			return true
		default:
			return false
		}
	})
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	g.Expect(RetryAfterOf(err)).To(Equal(time.Minute))
	// Tokens() reports 0 while paused; look at the bucket itself.
	g.Expect(lim.bucket.TokensAt(clk.Now())).To(BeNumerically("~", tokens, 1e-9), "the slot was given back")
}

func TestLimiterContextCancelWhileQueued(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: 2, Period: time.Second}, time.Minute, clk)
	g.Expect(lim.Wait(context.Background())).To(Succeed())
	before := lim.Tokens()

	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- lim.Wait(ctx) }()
	waitFor(t, "caller to queue", func() bool { return clk.Waiters() == 1 })
	cancel()
	err := <-result
	g.Expect(KindOf(err)).To(Equal(KindTransient))
	g.Expect(err).To(MatchError(context.Canceled))
	g.Expect(lim.Tokens()).To(BeNumerically("~", before, 1e-9), "the slot was given back")
}

// Callers refused for budget are promised distinct future slots, one refill
// interval apart, so they do not all come back at once; Admit takes no slot.
func TestLimiterRefusalsArePromisedDistinctSlots(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	// burst 1, then one slot per second.
	lim := NewLimiter(RateLimit{Requests: 2, Period: time.Second}, 100*time.Millisecond, clk)
	g.Expect(lim.Admit(context.Background())).To(Succeed())
	g.Expect(lim.Wait(context.Background())).To(Succeed())
	before := lim.Tokens()
	first, second := lim.Admit(context.Background()), lim.Wait(context.Background())
	g.Expect(KindOf(first)).To(Equal(KindRateLimited))
	g.Expect(KindOf(second)).To(Equal(KindRateLimited))
	g.Expect(RetryAfterOf(first)).To(Equal(time.Second))
	g.Expect(RetryAfterOf(second)).To(Equal(2 * time.Second))
	g.Expect(lim.Tokens()).To(Equal(before), "refusals take no slot")
}

func TestRatelimitHeaderParsing(t *testing.T) {
	for name, tc := range map[string]struct {
		ratelimit, policy string
		remaining         int
		reset             time.Duration
		ok                bool
		quota             int
		window            time.Duration
		hasPolicy         bool
	}{
		"Cloudflare's example": {`"default";r=50;t=30`, `"burst";q=100;w=60`, 50, 30 * time.Second, true, 100, time.Minute, true},
		"spaces and case":      {`"default"; R=7 ; t=1`, `"x"; q=1200; w=300`, 7, time.Second, true, 1200, 5 * time.Minute, true},
		"first item only":      {`"a";r=1;t=2, "b";r=99;t=99`, `"a";q=3;w=4, "b";q=5;w=6`, 1, 2 * time.Second, true, 3, 4 * time.Second, true},
		"missing t":            {`"default";r=50`, ``, 0, 0, false, 0, 0, false},
		"garbage":              {`r=x;t=y`, `q=;w=`, 0, 0, false, 0, 0, false},
		"negative":             {`"d";r=-1;t=5`, `"d";q=0;w=5`, 0, 0, false, 0, 0, false},
		"absent":               {``, ``, 0, 0, false, 0, 0, false},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			r, reset, ok := parseRatelimit(tc.ratelimit)
			g.Expect([]any{r, reset, ok}).To(Equal([]any{tc.remaining, tc.reset, tc.ok}))
			q, w, hasPolicy := parsePolicy(tc.policy)
			g.Expect([]any{q, w, hasPolicy}).To(Equal([]any{tc.quota, tc.window, tc.hasPolicy}))
		})
	}
}

func rateHeaders(remaining, reset, quota, window int) http.Header {
	h := http.Header{}
	h.Set("Ratelimit", fmt.Sprintf(`"default";r=%d;t=%d`, remaining, reset))
	h.Set("Ratelimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, quota, window))
	return h
}

// What the headers say is left, less a reserve, is spread over the rest of
// the window; at the reserve every call waits for the reset; after the
// reset the configured rate is back.
func TestLimiterFollowsRatelimitHeaders(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: 1200, Period: 5 * time.Minute}, time.Nanosecond, clk)
	base := lim.bucket.Limit()

	lim.Observe(rateHeaders(124, 100, 1200, 300)) // 100 left after the reserve of 24, for 99.5 s (t is rounded up)
	g.Expect(float64(lim.bucket.Limit())).To(BeNumerically("~", 100/99.5/2, 1e-9), "half, until the others' spending is measured")
	clk.Step(5 * time.Second)
	lim.Observe(rateHeaders(123, 95, 1200, 300)) // others spent 1 in 5 s while we sent nothing
	g.Expect(float64(lim.bucket.Limit())).To(BeNumerically("~", 99/94.5-0.2, 1e-9), "spread evenly, less the others' 0.2/s")
	clk.Step(5 * time.Second)
	lim.Observe(rateHeaders(73, 90, 1200, 300)) // others now spend 10/s (smoothed: 5.1/s), more than is left
	g.Expect(float64(lim.bucket.Limit())).To(BeNumerically("~", 49/89.5/20, 1e-9), "a floor keeps probing")

	lim.Observe(rateHeaders(reserveOf(1200), 40, 1200, 300)) // others spent the rest
	err := lim.Wait(context.Background())
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	g.Expect(err.Error()).To(ContainSubstring("Ratelimit header"))
	g.Expect(RetryAfterOf(err)).To(Equal(40 * time.Second))
	g.Expect(lim.Admit(context.Background())).To(HaveOccurred())

	clk.Step(100 * time.Second) // both windows the headers described are over
	g.Expect(lim.Admit(context.Background())).To(Succeed())
	g.Expect(lim.bucket.Limit()).To(Equal(base))

	// A published policy tighter than the configured budget caps it.
	lim.Observe(rateHeaders(600, 300, 600, 300))
	clk.Step(301 * time.Second)
	g.Expect(lim.Admit(context.Background())).To(Succeed())
	want, _ := bucketFor(RateLimit{Requests: 600, Period: 5 * time.Minute})
	g.Expect(lim.bucket.Limit()).To(Equal(want))

	// Headers that cannot be read change nothing.
	lim.Observe(http.Header{"Ratelimit": {"nonsense"}})
	g.Expect(lim.bucket.Limit()).To(Equal(want))
}

// A user's fixed-window budget shared with an outside consumer spending 40%
// of it: steered by the headers, the operator never exceeds the budget (no
// lockout) and still gets nearly all of what the outsider leaves.
func TestLimiterSharesTheUserBudgetWithAnOutsideConsumer(t *testing.T) {
	g := NewWithT(t)
	const quota, outside = 1200, 0.4
	window := 5 * time.Minute
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: quota, Period: window}, time.Nanosecond, clk)

	step := 50 * time.Millisecond
	start := clk.Now()
	ours := 0
	for w := 0; w < 4; w++ {
		windowStart := start.Add(time.Duration(w) * window)
		count, spentOutside := 0, 0
		for clk.Now().Before(windowStart.Add(window)) {
			elapsed := clk.Now().Sub(windowStart)
			due := int(outside * quota * elapsed.Seconds() / window.Seconds())
			count += due - spentOutside
			spentOutside = due
			for lim.Wait(context.Background()) == nil {
				count++
				ours++
				g.Expect(count).To(BeNumerically("<=", quota), "window %d exceeded: Cloudflare would lock the user out", w)
				lim.Observe(rateHeaders(quota-count, int(windowStart.Add(window).Sub(clk.Now()).Seconds()+0.999), quota, int(window.Seconds())))
			}
			clk.Step(step)
		}
	}
	left := (1 - outside) * quota * 4
	g.Expect(float64(ours)).To(BeNumerically(">=", 0.9*left), "the operator gets most of what is left: %d of %.0f", ours, left)
}

// Refused callers are promised slots at the rate the credentials can
// sustain: a moment's low steered rate (here: little left before the reset)
// must not space a queue of 2000 far into the future.
func TestLimiterPromisesSlotsAtTheSustainableRate(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: 1200, Period: 5 * time.Minute}, time.Nanosecond, clk)
	lim.Observe(rateHeaders(30, 300, 1200, 300)) // 6 left above the reserve for 300 s
	for lim.Wait(context.Background()) == nil {
	}
	var retries []time.Duration
	for range 10 {
		retries = append(retries, RetryAfterOf(lim.Wait(context.Background())))
	}
	sustained, _ := bucketFor(RateLimit{Requests: 1200, Period: 5 * time.Minute})
	for i := 1; i < len(retries); i++ {
		g.Expect(retries[i] - retries[i-1]).To(BeNumerically("~", time.Duration(float64(time.Second)/float64(sustained)), time.Millisecond))
	}
}

// named returns a fresh reconcile's context for the object called name.
func named(name string) context.Context { return WithCaller(context.Background(), name) }

// spentLimiter returns a limiter of one slot per second that waits for none
// (burst 1, already spent), on a fake clock.
func spentLimiter(t *testing.T) (*WithT, *clocktesting.FakeClock, *Limiter) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: 2, Period: time.Second}, 100*time.Millisecond, clk)
	g.Expect(lim.Wait(context.Background())).To(Succeed())
	return g, clk, lim
}

// A refused named caller keeps its place: a newcomer does not overtake it,
// and it is told to come back when the callers ahead of it have gone.
func TestLimiterKeepsRefusedCallersInLine(t *testing.T) {
	g, clk, lim := spentLimiter(t)

	a, b := lim.Wait(named("a")), lim.Wait(named("b"))
	g.Expect(RetryAfterOf(a)).To(Equal(time.Second))
	g.Expect(RetryAfterOf(b)).To(Equal(2 * time.Second))

	clk.Step(time.Second) // a's slot: one token is there
	c := lim.Wait(named("c"))
	g.Expect(KindOf(c)).To(Equal(KindRateLimited), "a newcomer waits behind a and b")
	g.Expect(RetryAfterOf(c)).To(Equal(2*time.Second), "two callers ahead")
	g.Expect(lim.Wait(named("a"))).To(Succeed())

	clk.Step(time.Second)
	g.Expect(KindOf(lim.Wait(named("c")))).To(Equal(KindRateLimited), "c came back early: b is ahead")
	g.Expect(lim.Wait(named("b"))).To(Succeed())
	clk.Step(time.Second)
	g.Expect(lim.Wait(named("c"))).To(Succeed())
}

// Coming back early is told the same due time again: the promise counts the
// callers ahead, it does not move to the end of a growing chain.
func TestLimiterRefusingAgainKeepsThePromise(t *testing.T) {
	g, clk, lim := spentLimiter(t)
	g.Expect(RetryAfterOf(lim.Wait(named("a")))).To(Equal(time.Second))
	g.Expect(RetryAfterOf(lim.Wait(named("b")))).To(Equal(2 * time.Second))
	for range 5 {
		clk.Step(200 * time.Millisecond)
		due := clk.Now().Add(RetryAfterOf(lim.Wait(named("b"))))
		g.Expect(due).To(BeTemporally("~", testEpoch.Add(2*time.Second), time.Millisecond))
	}
}

// A caller later than lateTurn (its object waits in a busy work queue, or
// was deleted) does not hold up the line; it keeps its place, and once it
// is back and told to wait, it goes before those behind it. A place is
// forgotten forgetTurn after it was due.
func TestLimiterLateCallersDoNotHoldUpTheLine(t *testing.T) {
	g, clk, lim := spentLimiter(t)
	g.Expect(KindOf(lim.Wait(named("late")))).To(Equal(KindRateLimited)) // due at 1s
	g.Expect(KindOf(lim.Wait(named("b")))).To(Equal(KindRateLimited))    // due at 2s

	clk.Step(1500 * time.Millisecond)
	g.Expect(KindOf(lim.Wait(named("b")))).To(Equal(KindRateLimited), "late is due and not yet late enough to be passed")
	clk.Step(600 * time.Millisecond)
	g.Expect(lim.Wait(named("b"))).To(Succeed(), "late is more than lateTurn late")
	c := lim.Wait(named("c"))
	g.Expect(RetryAfterOf(c)).To(BeNumerically("~", time.Second, time.Millisecond))

	clk.Step(500 * time.Millisecond)
	g.Expect(KindOf(lim.Wait(named("late")))).To(Equal(KindRateLimited), "no slot yet")
	clk.Step(500 * time.Millisecond)
	g.Expect(KindOf(lim.Wait(named("c")))).To(Equal(KindRateLimited), "late is back and ahead of c")
	g.Expect(lim.Wait(named("late"))).To(Succeed())

	clk.Step(forgetTurn + 2*time.Second)
	lim.mu.Lock()
	lim.aheadLocked(clk.Now(), "")
	g.Expect(lim.line).To(BeEmpty(), "c never came back: its place is forgotten")
	lim.mu.Unlock()
}

// Once a reconcile got a slot, its next call (a rotate's refresh) does not
// queue behind the line again.
func TestLimiterAdmittedReconcileDoesNotQueueAgain(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	lim := NewLimiter(RateLimit{Requests: 2, Period: time.Second}, 100*time.Millisecond, clk)
	ctx := named("a")
	g.Expect(lim.Admit(ctx)).To(Succeed())
	g.Expect(lim.Wait(ctx)).To(Succeed())
	g.Expect(KindOf(lim.Wait(named("b")))).To(Equal(KindRateLimited))
	clk.Step(time.Second)
	g.Expect(lim.Wait(ctx)).To(Succeed(), "a's second call goes before b")
	g.Expect(KindOf(lim.Wait(named("b")))).To(Equal(KindRateLimited))
}

// The later calls of a reconcile that got a slot wait for theirs (up to
// admittedWait) instead of being refused: refused, the reconcile would start
// over and spend its first call again, and under load never get both.
func TestLimiterLetsAnAdmittedReconcileWaitForItsNextCall(t *testing.T) {
	g, clk, lim := spentLimiter(t) // one slot a second, max wait 100ms
	clk.Step(time.Second)
	ctx := named("a")
	g.Expect(lim.Wait(ctx)).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- lim.Wait(ctx) }()
	waitFor(t, "a's second call to wait for its slot", clk.HasWaiters)
	g.Expect(KindOf(lim.Wait(named("b")))).To(Equal(KindRateLimited), "the slot a waits for is a's")
	clk.Step(time.Second)
	g.Expect(<-done).To(Succeed())

	// A pause refuses it all the same, and tells it when to come back.
	lim.Pause(5 * time.Second)
	g.Expect(RetryAfterOf(lim.Wait(ctx))).To(Equal(5 * time.Second))
}

// A pause (429, or the budget held at the reserve) keeps the line's order:
// callers told to wait for its end are due when it ends.
func TestLimiterPauseKeepsTheLine(t *testing.T) {
	g, clk, lim := spentLimiter(t)
	g.Expect(KindOf(lim.Wait(named("a")))).To(Equal(KindRateLimited))
	g.Expect(KindOf(lim.Wait(named("b")))).To(Equal(KindRateLimited))
	lim.Pause(10 * time.Second)
	clk.Step(time.Second)
	g.Expect(RetryAfterOf(lim.Wait(named("a")))).To(Equal(9 * time.Second))
	g.Expect(RetryAfterOf(lim.Admit(named("b")))).To(Equal(9 * time.Second))

	clk.Step(9 * time.Second)
	g.Expect(KindOf(lim.Wait(named("b")))).To(Equal(KindRateLimited), "a is still ahead after the pause")
	g.Expect(lim.Wait(named("a"))).To(Succeed())
	clk.Step(time.Second)
	g.Expect(lim.Wait(named("b"))).To(Succeed())
}

// A refusal's text in a status condition must not change with its retry
// time, or every refusal of a waiting object would rewrite its status.
func TestSteadyTextLeavesOutTheRetryTime(t *testing.T) {
	g, clk, lim := spentLimiter(t)
	first := fmt.Errorf("creating token: %w", lim.Wait(named("a")))
	clk.Step(300 * time.Millisecond)
	again := fmt.Errorf("creating token: %w", lim.Wait(named("a")))
	g.Expect(first.Error()).NotTo(Equal(again.Error()), "the errors do carry their retry times")
	g.Expect(SteadyText(first)).To(Equal(SteadyText(again)))
	g.Expect(SteadyText(first)).To(HavePrefix("creating token: "))
	g.Expect(SteadyText(first)).NotTo(ContainSubstring("retry after"))
	plain := errors.New("boom")
	g.Expect(SteadyText(plain)).To(Equal("boom"))
}
