package sim

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func always(kinds ...FaultKind) Faults { return Faults{Rate: 1, Kinds: kinds} }

func TestA5xxFaultAnswersHTMLAndChangesNothing(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) { o.Faults = always(Fault5xx) })
	r := h.call("POST", acct, `{"name":"x"}`)
	g.Expect(r.status).To(BeElementOf(http.StatusBadGateway, http.StatusServiceUnavailable))
	g.Expect(r.header.Get("Content-Type")).To(HavePrefix("text/html"))
	g.Expect(r.raw).To(HavePrefix("<html>"))
	g.Expect(json.Valid([]byte(r.raw))).To(BeFalse())
	g.Expect(h.sim.Tokens()).To(BeEmpty())
	g.Expect(h.sim.Stats().Faults).To(Equal(map[FaultKind]int{Fault5xx: 1}))
	g.Expect(h.v.Exempted()).To(Equal(1), "the validator let the HTML through as documented")
}

func TestA429FaultAnswersTheEnvelopeWithRetryAfter(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) {
		o.Faults = Faults{Rate: 1, Kinds: []FaultKind{Fault429}, RetryAfter: 3 * time.Second}
	})
	r := h.call("GET", acct, "")
	g.Expect(r.status).To(Equal(http.StatusTooManyRequests))
	g.Expect(r.header.Get("Retry-After")).To(Equal("3"))
	g.Expect(r.code()).To(Equal(CodeRateLimited))
	st := h.sim.Stats()
	g.Expect(st.Faults[Fault429]).To(Equal(1))
	g.Expect(st.RateLimited).To(Equal(0), "not the budget")
	g.Expect(st.ByStatus[429]).To(Equal(1))
}

func TestAResetFaultIsATransportErrorAndChangesNothing(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) { o.Faults = always(FaultReset) })
	_, err := h.send("POST", acct, `{"name":"x"}`, bearer)
	g.Expect(err).To(HaveOccurred())
	var netErr net.Error
	g.Expect(errors.As(err, &netErr) || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset")).
		To(BeTrue(), err.Error())
	g.Expect(h.sim.Tokens()).To(BeEmpty())
	st := h.sim.Stats()
	g.Expect(st.Faults[FaultReset]).To(Equal(1))
	g.Expect(st.Count(OpCreate, 0)).To(Equal(1), "no response")
}

func TestALatencyFaultDelaysThenServes(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) {
		o.Faults = Faults{Rate: 1, Kinds: []FaultKind{FaultLatency}, LatencySpike: 150 * time.Millisecond}
	})
	start := time.Now()
	r := h.call("POST", acct, `{"name":"slow"}`)
	g.Expect(time.Since(start)).To(BeNumerically(">=", 150*time.Millisecond))
	g.Expect(r.status).To(Equal(http.StatusCreated))

	client := &http.Client{Timeout: 50 * time.Millisecond}
	req, _ := http.NewRequest("GET", h.srv.URL+acct, nil)
	bearer(req)
	_, err := client.Do(req)
	g.Expect(err).To(MatchError(ContainSubstring("Client.Timeout")))
}

func TestDropResponseCommitsThenLeavesTheClientWithAnError(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"seed"}`)
	h.sim.SetFaults(always(FaultDropResponse))

	t.Run("create happened but the secret never arrived", func(t *testing.T) {
		g := NewWithT(t)
		_, err := h.send("POST", acct, `{"name":"lost"}`, bearer)
		g.Expect(err).To(HaveOccurred())
		g.Expect(h.sim.Tokens()).To(HaveLen(2))
		lost := h.sim.Tokens()[1]
		g.Expect(lost.Name).To(Equal("lost"))
		g.Expect(h.sim.IssuedSecrets()).NotTo(ContainElement(lost.ClientSecret))
	})
	t.Run("rotate happened but the new secret never arrived", func(t *testing.T) {
		g := NewWithT(t)
		_, err := h.send("POST", acct+"/"+tok.ID+"/rotate", "", bearer)
		g.Expect(err).To(HaveOccurred())
		g.Expect(h.sim.Verify(tok.ClientID, tok.ClientSecret)).To(BeFalse(), "the old secret is revoked")
		g.Expect(h.sim.IssuedSecrets()).NotTo(ContainElement(h.state(tok.ID).ClientSecret))
	})
	t.Run("reads are not dropped", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(h.call("GET", acct+"/"+tok.ID, "").status).To(Equal(http.StatusOK))
		g.Expect(h.call("PUT", acct+"/"+tok.ID, `{"name":"kept"}`).status).To(Equal(http.StatusOK), "nor updates")
	})
	t.Run("delete happened but the client got an error", func(t *testing.T) {
		g := NewWithT(t)
		_, err := h.send("DELETE", acct+"/"+tok.ID, "", bearer)
		g.Expect(err).To(HaveOccurred())
		_, exists := h.sim.Token(tok.ID)
		g.Expect(exists).To(BeFalse())
	})

	st := h.sim.Stats()
	g.Expect(st.Faults[FaultDropResponse]).To(Equal(3))
	for _, op := range []string{OpCreate, OpRotate, OpDelete} {
		g.Expect(st.Count(op, 0)).To(Equal(1), op)
	}
}

func TestFaultsCanBeSwitchedAtRunTime(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK))
	h.sim.SetFaults(always(Fault429))
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusTooManyRequests))
	h.sim.SetFaults(Faults{})
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK))
}

func TestTheFaultRateIsAProbability(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) { o.Faults = Faults{Rate: 0.3, Kinds: []FaultKind{Fault429}} })
	faulted := 0
	for range 400 {
		if h.call("GET", acct, "").status == http.StatusTooManyRequests {
			faulted++
		}
	}
	// Binomial(400, 0.3): mean 120, sd ~9; the seed makes it deterministic.
	g.Expect(faulted).To(BeNumerically("~", 120, 40))
	g.Expect(h.sim.Stats().Faults[Fault429]).To(Equal(faulted))
}

func TestAFaultKindThatDoesNotApplyInjectsNothing(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) { o.Faults = always(FaultDropResponse) })
	for range 20 {
		g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK))
	}
	g.Expect(h.sim.Stats().Faults).To(BeEmpty())
}

func TestEveryKindIsDrawnWhenKindsIsEmpty(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t, func(o *Options) { o.Faults = Faults{Rate: 1, LatencySpike: time.Millisecond} })
	for range 60 {
		_, _ = h.send("POST", acct, `{"name":"x"}`, bearer)
	}
	g.Expect(h.sim.Stats().Faults).To(HaveLen(len(AllFaultKinds)))
}

func TestOpsRestrictFaultsToTheNamedOperations(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"seed"}`)
	h.sim.SetFaults(Faults{Rate: 1, Kinds: []FaultKind{Fault5xx}, Ops: []string{OpRefresh}})

	g.Expect(h.call("POST", acct+"/"+tok.ID+"/refresh", "").status).To(BeElementOf(http.StatusBadGateway, http.StatusServiceUnavailable))
	g.Expect(h.call("POST", acct+"/"+tok.ID+"/rotate", "").status).To(Equal(http.StatusOK), "rotate is not listed")
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK), "nor list")
	g.Expect(h.call("GET", acct+"/"+tok.ID, "").status).To(Equal(http.StatusOK), "nor get")
	g.Expect(h.call("POST", acct, `{"name":"other"}`).status).To(Equal(http.StatusCreated), "nor create")
	g.Expect(h.call("POST", acct+"/"+tok.ID+"/refresh", "").status).To(BeElementOf(http.StatusBadGateway, http.StatusServiceUnavailable))

	st := h.sim.Stats()
	g.Expect(st.Faults).To(Equal(map[FaultKind]int{Fault5xx: 2}))
	g.Expect(st.Count(OpRefresh, http.StatusOK)).To(Equal(0))

	h.sim.SetFaults(Faults{Rate: 1, Kinds: []FaultKind{Fault5xx}})
	g.Expect(h.call("GET", acct, "").status).To(BeElementOf(http.StatusBadGateway, http.StatusServiceUnavailable), "no ops: every operation")
}

func TestOpsRoundTripAsJSONAndRejectUnknownNames(t *testing.T) {
	g := NewWithT(t)
	var f Faults
	g.Expect(json.Unmarshal([]byte(`{"rate":0.5,"kinds":["5xx"],"ops":["refresh","Rotate"]}`), &f)).To(Succeed())
	g.Expect(f.Ops).To(Equal([]string{OpRefresh, OpRotate}))
	b, err := json.Marshal(f)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).To(ContainSubstring(`"ops":["refresh","rotate"]`))
	var back Faults
	g.Expect(json.Unmarshal(b, &back)).To(Succeed())
	g.Expect(back).To(Equal(f))

	b, err = json.Marshal(Faults{Rate: 0.1})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(b)).NotTo(ContainSubstring("ops"), "empty ops (every operation) is omitted")

	g.Expect(json.Unmarshal([]byte(`{"rate":1,"ops":["refesh"]}`), &f)).To(MatchError(ContainSubstring(`unknown operation "refesh"`)))
}

func TestFaultsRoundTripAsJSON(t *testing.T) {
	g := NewWithT(t)
	var f Faults
	g.Expect(json.Unmarshal([]byte(`{"rate":0.5,"kinds":["5xx","drop-response"],"latency_spike":"3s","retry_after":2}`), &f)).To(Succeed())
	g.Expect(f).To(Equal(Faults{Rate: 0.5, Kinds: []FaultKind{Fault5xx, FaultDropResponse}, LatencySpike: 3 * time.Second, RetryAfter: 2 * time.Second}))
	b, err := json.Marshal(f)
	g.Expect(err).NotTo(HaveOccurred())
	var back Faults
	g.Expect(json.Unmarshal(b, &back)).To(Succeed())
	g.Expect(back).To(Equal(f))

	g.Expect(json.Unmarshal([]byte(`{"rate":2}`), &f)).To(MatchError(ContainSubstring("outside 0..1")))
	g.Expect(json.Unmarshal([]byte(`{"kinds":["gremlins"]}`), &f)).To(MatchError(ContainSubstring(`unknown fault kind "gremlins"`)))
}
