package sim

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestOverTheBudgetAUserIsLockedOutForFiveMinutesThenRecovers(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) { o.RateLimit = RateLimit{Requests: 5, Period: time.Minute} })

	for i := range 5 {
		r := h.call("GET", acct, "")
		g.Expect(r.status).To(Equal(http.StatusOK))
		g.Expect(r.header.Get("Ratelimit")).To(Equal(fmt.Sprintf(`"default";r=%d;t=60`, 4-i)))
		g.Expect(r.header.Get("Ratelimit-Policy")).To(Equal(`"default";q=5;w=60`))
		g.Expect(r.header.Get("Retry-After")).To(BeEmpty())
	}

	r := h.call("POST", acct, `{"name":"over"}`)
	g.Expect(r.status).To(Equal(http.StatusTooManyRequests))
	g.Expect(r.code()).To(Equal(CodeRateLimited))
	g.Expect(string(r.env.Result)).To(Equal("null"))
	g.Expect(r.header.Get("Retry-After")).To(Equal("300"), "the lockout, counted from this request")
	g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=0;t=300`))
	g.Expect(r.header.Get("Ratelimit-Policy")).To(Equal(`"default";q=5;w=60`))
	g.Expect(h.sim.Tokens()).To(BeEmpty(), "a refused create does nothing")

	for _, tc := range []struct {
		step time.Duration
		left string
	}{
		{45 * time.Second, "255"},
		{15 * time.Second, "240"}, // the window has ended; the lockout has not
		{239*time.Second + 500*time.Millisecond, "1"},
	} {
		h.clock.Step(tc.step)
		r = h.call("GET", acct, "")
		g.Expect(r.status).To(Equal(http.StatusTooManyRequests))
		g.Expect(r.header.Get("Retry-After")).To(Equal(tc.left))
		g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=0;t=` + tc.left))
	}

	h.clock.Step(500 * time.Millisecond)
	r = h.call("GET", acct, "")
	g.Expect(r.status).To(Equal(http.StatusOK), "the lockout is over: a fresh window")
	g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=4;t=60`))

	st := h.sim.Stats()
	g.Expect(st.RateLimited).To(Equal(4))
	g.Expect(st.Lockouts).To(Equal(1))
	g.Expect(st.ByStatus[429]).To(Equal(4))
	g.Expect(st.Count(OpCreate, 429)).To(Equal(1))
}

func TestTheLockoutLengthIsAnOption(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) {
		o.RateLimit = RateLimit{Requests: 1, Period: time.Hour}
		o.Lockout = 90 * time.Second
	})
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK))
	r := h.call("GET", acct, "")
	g.Expect(r.status).To(Equal(http.StatusTooManyRequests))
	g.Expect(r.header.Get("Retry-After")).To(Equal("90"))
	g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=0;t=90`))
	h.clock.Step(90 * time.Second)
	r = h.call("GET", acct, "")
	g.Expect(r.status).To(Equal(http.StatusOK), "a fresh window opens when the lockout ends, however long the period")
	g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=0;t=3600`))
}

func TestBudgetsArePerUser(t *testing.T) {
	const (
		secondWriter = "second-writer-token-0123456789"
		loner        = "loner-token-0123456789"
	)
	other := auth("Authorization", "Bearer "+secondWriter)
	alone := auth("Authorization", "Bearer "+loner)
	users := func(o *Options) {
		o.RateLimit = RateLimit{Requests: 2, Period: time.Minute}
		o.APITokens = []APIToken{
			{Token: writerToken, User: keyEmail},
			{Token: secondWriter, User: keyEmail},
			{Token: readerToken, ReadOnly: true, User: keyEmail},
			{Token: loner},
		}
	}
	for _, tc := range []struct {
		name        string
		tweak       func(*Options)
		spend, then func(*http.Request)
		want        int
	}{
		{"API tokens of the same user share a budget", users, bearer, other, 429},
		{"a read-only token shares its user's budget", users, bearer, readOnly, 429},
		{"a legacy key shares the budget of tokens whose User is its email", users, bearer, legacyKey, 429},
		{"and the other way round", users, legacyKey, bearer, 429},
		{"a token without a User is its own user", users, bearer, alone, 200},
		{"another user's token is unaffected", users, alone, bearer, 200},
		{"by default each API token is its own user", nil, bearer, readOnly, 200},
		{"by default a legacy key is its email's user", nil, bearer, legacyKey, 200},
		{"in open mode each credential is its own user", func(o *Options) {
			o.RateLimit = RateLimit{Requests: 2, Period: time.Minute}
			o.APITokens, o.APIKeys = nil, nil
		}, auth("Authorization", "Bearer one"), auth("Authorization", "Bearer two"), 200},
		{"in open mode the same token is the same user", func(o *Options) {
			o.RateLimit = RateLimit{Requests: 2, Period: time.Minute}
			o.APITokens, o.APIKeys = nil, nil
		}, auth("Authorization", "Bearer one"), auth("Authorization", "Bearer one"), 429},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newHarness(t, func(o *Options) {
				o.RateLimit = RateLimit{Requests: 2, Period: time.Minute}
				if tc.tweak != nil {
					tc.tweak(o)
				}
			})
			for range 2 {
				g.Expect(h.callAs("GET", acct, "", tc.spend).status).To(Equal(http.StatusOK))
			}
			r := h.callAs("GET", acct, "", tc.then)
			g.Expect(r.status).To(Equal(tc.want), r.raw)
			if tc.want == http.StatusOK {
				g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=1;t=60`), "a budget of its own")
			} else {
				g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=0;t=300`))
			}
		})
	}
}

func TestALockoutBlocksEveryCredentialOfTheUser(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) {
		o.RateLimit = RateLimit{Requests: 1, Period: time.Minute}
		o.APITokens = []APIToken{{Token: writerToken, User: keyEmail}, {Token: readerToken, ReadOnly: true}}
	})
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK))
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusTooManyRequests))
	h.clock.Step(2 * time.Minute)
	r := h.callAs("GET", acct, "", legacyKey)
	g.Expect(r.status).To(Equal(http.StatusTooManyRequests), "same user, still locked out")
	g.Expect(r.header.Get("Retry-After")).To(Equal("180"))
	g.Expect(h.callAs("GET", acct, "", readOnly).status).To(Equal(http.StatusOK), "another user")
	g.Expect(h.sim.Stats().Lockouts).To(Equal(1), "one lockout, however many refusals")
}

func TestEveryAuthenticatedAnswerCarriesTheHeaders(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.RateLimit = RateLimit{Requests: 100, Period: time.Minute} })
	for _, tc := range []struct {
		name, method, path, body string
		as                       func(*http.Request)
		status                   int
	}{
		{"a success", "GET", acct, "", bearer, 200},
		{"a 404 for a token", "GET", acct + "/00000000-0000-0000-0000-000000000000", "", bearer, 404},
		{"a 404 for an account", "GET", "/client/v4/accounts/nope/access/service_tokens", "", bearer, 404},
		{"a 403", "POST", acct, `{"name":"x"}`, readOnly, 403},
		{"a 400", "POST", acct, `{"name":""}`, bearer, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := h.callAs(tc.method, tc.path, tc.body, tc.as)
			g.Expect(r.status).To(Equal(tc.status))
			g.Expect(r.header.Get("Ratelimit")).To(MatchRegexp(`^"default";r=\d+;t=60$`))
			g.Expect(r.header.Get("Ratelimit-Policy")).To(Equal(`"default";q=100;w=60`))
		})
	}
}

func TestUnauthenticatedRequestsSpendNoBudget(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) { o.RateLimit = RateLimit{Requests: 1, Period: time.Minute} })
	for range 5 {
		r := h.callAs("GET", acct, "", noAuth)
		g.Expect(r.status).To(Equal(http.StatusUnauthorized))
		g.Expect(r.header.Get("Ratelimit")).To(BeEmpty())
	}
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK))
}

func TestSpendBudgetChargesTheUserLikeAnotherClient(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) {
		o.RateLimit = RateLimit{Requests: 10, Period: time.Minute}
		o.APITokens = []APIToken{{Token: writerToken, User: "alice"}, {Token: readerToken, ReadOnly: true}}
	})
	g.Expect(h.sim.UserOf(writerToken)).To(Equal("alice"))
	g.Expect(h.sim.UserOf(readerToken)).To(Equal(readerToken), "a token without a User is its own user")

	g.Expect(h.call("GET", acct, "").header.Get("Ratelimit")).To(Equal(`"default";r=9;t=60`))
	h.clock.Step(10 * time.Second)
	h.sim.SpendBudget("alice", 4)
	h.sim.SpendBudget(h.sim.UserOf(readerToken), 3)
	g.Expect(h.call("GET", acct, "").header.Get("Ratelimit")).To(Equal(`"default";r=4;t=50`))
	g.Expect(h.callAs("GET", acct, "", readOnly).header.Get("Ratelimit")).To(Equal(`"default";r=6;t=60`),
		"a charge opens the reader's window like a request would")

	h.sim.SpendBudget("alice", 5)
	g.Expect(h.sim.Stats().Lockouts).To(Equal(1), "spending can lock a user out")
	r := h.call("GET", acct, "")
	g.Expect(r.status).To(Equal(http.StatusTooManyRequests))
	g.Expect(r.header.Get("Retry-After")).To(Equal("300"))
	h.sim.SpendBudget("alice", 50)
	g.Expect(h.sim.Stats().Lockouts).To(Equal(1), "nothing is spent during a lockout")
	g.Expect(h.sim.Stats().RateLimited).To(Equal(1), "only the request's 429")

	h.sim.SpendBudget("nobody-configured", 3) // any user name has a budget
	unlimited := newHarness(t)
	unlimited.sim.SpendBudget(unlimited.sim.UserOf(writerToken), 1_000_000)
	g.Expect(unlimited.call("GET", acct, "").status).To(Equal(http.StatusOK))
}

func TestAnOutsideConsumerSpendsItsFractionSteadily(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) {
		o.RateLimit = RateLimit{Requests: 10, Period: 100 * time.Second}
		o.APITokens = []APIToken{{Token: writerToken, User: "alice"}, {Token: readerToken, ReadOnly: true}}
		o.Outside = []OutsideConsumer{{User: "alice", Fraction: 0.5}}
	})
	for _, tc := range []struct {
		step time.Duration
		want string // own requests so far + floor(0.5 × 10 × elapsed/100s)
	}{
		{0, `"default";r=9;t=100`},                // 1 + 0
		{40 * time.Second, `"default";r=6;t=60`},  // 2 + 2
		{39 * time.Second, `"default";r=4;t=21`},  // 3 + 3 (3.95 floors)
		{time.Second, `"default";r=2;t=20`},       // 4 + 4
		{20 * time.Second, `"default";r=9;t=100`}, // a new window: 1 + 0
	} {
		h.clock.Step(tc.step)
		r := h.call("GET", acct, "")
		g.Expect(r.status).To(Equal(http.StatusOK))
		g.Expect(r.header.Get("Ratelimit")).To(Equal(tc.want), "after %s", tc.step)
	}
	g.Expect(h.callAs("GET", acct, "", readOnly).header.Get("Ratelimit")).To(Equal(`"default";r=9;t=100`), "another user")
}

func TestOutsideSpendingCanLockAUserOut(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) {
		o.RateLimit = RateLimit{Requests: 10, Period: 100 * time.Second}
		o.Outside = []OutsideConsumer{{Fraction: 0.6}, {User: "nobody", Fraction: 0.4}} // "": every user
	})
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK))
	h.clock.Step(90 * time.Second) // outside: floor(0.6 × 10 × 0.9) = 5
	for i := range 4 {
		g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK), "request %d", i+2)
	}
	r := h.call("GET", acct, "") // 6 own + 5 outside > 10
	g.Expect(r.status).To(Equal(http.StatusTooManyRequests))
	g.Expect(r.header.Get("Retry-After")).To(Equal("300"))
	g.Expect(h.sim.Stats().Lockouts).To(Equal(1))
	g.Expect(h.callAs("GET", acct, "", readOnly).header.Get("Ratelimit")).To(Equal(`"default";r=9;t=100`),
		"every user has the outside consumer, but only over its own window")
}

func TestTheDefaultBudgetIs1200PerFiveMinutesAndNegativeIsUnlimited(t *testing.T) {
	g := NewWithT(t)
	def := newHarness(t, func(o *Options) { o.RateLimit = RateLimit{} })
	r := def.call("GET", acct, "")
	g.Expect(r.header.Get("Ratelimit-Policy")).To(Equal(`"default";q=1200;w=300`))
	g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=1199;t=300`))

	unlimited := newHarness(t) // the harness default is RateLimit{Requests: -1}
	for range 50 {
		r := unlimited.call("GET", acct, "")
		g.Expect(r.status).To(Equal(http.StatusOK))
		g.Expect(r.header.Get("Ratelimit")).To(BeEmpty())
	}
}

// Outside consumers spend while nobody else calls: a client that took the
// whole budget early in the window locks the user out when the outsider's
// spending crosses the budget, not only at its own next request.
func TestOutsideSpendingLocksOutAfterAnEarlyBurst(t *testing.T) {
	g := NewWithT(t)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(RateLimit{Requests: 100, Period: 100 * time.Second}, time.Minute, []OutsideConsumer{{User: "u", Fraction: 0.5}})
	u := userKey("u")
	for range 90 {
		g.Expect(l.take(u, start).allowed).To(BeTrue())
	}
	// The outsider spends 0.5/s: its 11th request, at 22s, goes over.
	d := l.take(u, start.Add(30*time.Second))
	g.Expect(d.allowed).To(BeFalse())
	g.Expect(d.lockedOut).To(BeTrue())
	g.Expect(d.reset).To(Equal(52*time.Second), "locked out from 22s for a minute")
	g.Expect(l.take(u, start.Add(83*time.Second)).allowed).To(BeTrue(), "a fresh window after the lockout")
}
