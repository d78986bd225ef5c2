package sim

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestTheRateBudgetRefusesForTheRestOfTheWindowThenRecovers(t *testing.T) {
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
	g.Expect(r.header.Get("Retry-After")).To(Equal("60"))
	g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=0;t=60`))
	g.Expect(h.sim.Tokens()).To(BeEmpty(), "a refused create does nothing")

	h.clock.Step(45 * time.Second)
	r = h.call("GET", acct, "")
	g.Expect(r.status).To(Equal(http.StatusTooManyRequests), "fixed window: still refused")
	g.Expect(r.header.Get("Retry-After")).To(Equal("15"))

	h.clock.Step(15 * time.Second)
	r = h.call("GET", acct, "")
	g.Expect(r.status).To(Equal(http.StatusOK), "a new window")
	g.Expect(r.header.Get("Ratelimit")).To(Equal(`"default";r=4;t=60`))

	st := h.sim.Stats()
	g.Expect(st.RateLimited).To(Equal(2))
	g.Expect(st.ByStatus[429]).To(Equal(2))
	g.Expect(st.Count(OpCreate, 429)).To(Equal(1))
}

func TestBudgetsArePerCredential(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) { o.RateLimit = RateLimit{Requests: 2, Period: time.Minute} })
	for range 3 {
		h.call("GET", acct, "")
	}
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusTooManyRequests))
	g.Expect(h.callAs("GET", acct, "", readOnly).status).To(Equal(http.StatusOK))
	g.Expect(h.callAs("GET", acct, "", legacyKey).status).To(Equal(http.StatusOK))
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
