package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// control calls a /_sim endpoint without credentials and decodes JSON into out.
func (h *harness) control(method, path string, hdr http.Header, body string, out any) int {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			h.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func TestTheTokensEndpointIsTheOracleWithSecrets(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"o","duration":"forever"}`)
	h.call("POST", acct+"/"+tok.ID+"/rotate", jsonBody(map[string]any{"previous_client_secret_expires_at": t0.Add(time.Hour)}))

	var got []TokenState
	g.Expect(h.control("GET", "/_sim/tokens", nil, "", &got)).To(Equal(200))
	g.Expect(got).To(Equal(h.sim.Tokens()))
	g.Expect(got).To(HaveLen(1))
	g.Expect(got[0].PreviousClientSecret).To(Equal(tok.ClientSecret))
	g.Expect(got[0].ClientSecret).NotTo(BeEmpty())
	g.Expect(got[0].ExpiresAt.IsZero()).To(BeTrue())
}

func TestTheVerifyEndpointAnswersLikeAccess(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"v"}`)
	hdr := func(id, secret string) http.Header {
		return http.Header{"Cf-Access-Client-Id": {id}, "Cf-Access-Client-Secret": {secret}}
	}
	g.Expect(h.control("GET", "/_sim/verify", hdr(tok.ClientID, "wrong"), "", nil)).To(Equal(403))
	g.Expect(h.control("GET", "/_sim/verify", hdr("unknown.access", tok.ClientSecret), "", nil)).To(Equal(403))
	g.Expect(h.control("GET", "/_sim/verify", nil, "", nil)).To(Equal(403))
	g.Expect(h.call("GET", acct+"/"+tok.ID, "").resultKeys()).NotTo(HaveKey("last_seen_at"))

	h.clock.Step(time.Minute)
	g.Expect(h.control("GET", "/_sim/verify", hdr(tok.ClientID, tok.ClientSecret), "", nil)).To(Equal(200))
	seen := h.call("GET", acct+"/"+tok.ID, "").token().LastSeenAt
	g.Expect(mustTime(seen)).To(Equal(t0.Add(time.Minute)), "a successful Access login stamps last_seen_at")
}

func TestStatsCountRequestsByOperationAndStatus(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"s"}`)
	h.call("GET", acct+"/"+tok.ID, "")
	h.call("GET", acct+"/00000000-0000-4000-8000-000000000000", "")
	h.callAs("GET", acct, "", noAuth)

	var st Stats
	g.Expect(h.control("GET", "/_sim/stats", nil, "", &st)).To(Equal(200))
	g.Expect(st).To(Equal(h.sim.Stats()))
	g.Expect(st.Requests).To(Equal(4))
	g.Expect(st.ByOp).To(Equal(map[string]int{OpCreate: 1, OpGet: 2, OpList: 1}))
	g.Expect(st.ByStatus).To(Equal(map[int]int{201: 1, 200: 1, 404: 1, 401: 1}))
	g.Expect(st.Count(OpGet, 404)).To(Equal(1))

	log := h.sim.RequestLog()
	g.Expect(log).To(HaveLen(4))
	g.Expect(log[0]).To(Equal(Request{Time: t0, Method: "POST", Path: acct, Op: OpCreate, Status: 201,
		Credential: CredentialID(writerToken), CreatedTokenID: tok.ID}))

	g.Expect(h.control("POST", "/_sim/reset-stats", nil, "", nil)).To(Equal(204))
	g.Expect(h.sim.Stats().Requests).To(Equal(0))
	g.Expect(h.sim.RequestLog()).To(BeEmpty())
}

func TestTheFaultsEndpointSwitchesFaults(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	var f Faults
	g.Expect(h.control("PUT", "/_sim/faults", nil, `{"rate":1,"kinds":["429"]}`, &f)).To(Equal(200))
	g.Expect(f.Rate).To(Equal(1.0))
	g.Expect(f.Kinds).To(Equal([]FaultKind{Fault429}))
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusTooManyRequests))

	var got Faults
	g.Expect(h.control("GET", "/_sim/faults", nil, "", &got)).To(Equal(200))
	g.Expect(got).To(Equal(h.sim.CurrentFaults()))

	g.Expect(h.control("PUT", "/_sim/faults", nil, `{"rate":1,"kinds":["meteor"]}`, nil)).To(Equal(400))
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusTooManyRequests), "a bad PUT changes nothing")
	g.Expect(h.control("PUT", "/_sim/faults", nil, `{"rate":0}`, nil)).To(Equal(200))
	g.Expect(h.call("GET", acct, "").status).To(Equal(http.StatusOK))
}

func TestOutOfBandDeleteAndUpdateMakeDrift(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	a := h.create(`{"name":"a"}`)
	b := h.create(`{"name":"b"}`)

	g.Expect(h.control("DELETE", "/_sim/tokens/"+a.ID, nil, "", nil)).To(Equal(200))
	g.Expect(h.control("DELETE", "/_sim/tokens/"+a.ID, nil, "", nil)).To(Equal(404))
	g.Expect(h.call("GET", acct+"/"+a.ID, "").status).To(Equal(http.StatusNotFound))
	g.Expect(h.sim.DeleteTokenOutOfBand(a.ID)).To(BeFalse())

	g.Expect(h.sim.UpdateTokenOutOfBand(b.ID, func(t *TokenState) {
		t.Name = "renamed"
		t.Enabled = false
		t.ID = "hijacked"
		t.AccountID = "acc2"
	})).To(BeTrue())
	got := h.call("GET", acct+"/"+b.ID, "").token()
	g.Expect(got.Name).To(Equal("renamed"))
	g.Expect(got.Enabled).To(BeFalse())
	g.Expect(h.call("GET", acct+"?name=renamed", "").tokens()).To(HaveLen(1))
	g.Expect(h.call("GET", acct+"?name=b", "").tokens()).To(BeEmpty())
	g.Expect(h.sim.Verify(b.ClientID, b.ClientSecret)).To(BeFalse())
	g.Expect(h.sim.UpdateTokenOutOfBand("missing", func(*TokenState) {})).To(BeFalse())
}

func TestNoSecretOrAPITokenReachesTheLogOrStats(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"leak"}`)
	h.call("POST", acct+"/"+tok.ID+"/rotate", "")
	h.callAs("GET", acct, "", legacyKey)

	dump, err := json.Marshal(struct {
		Log   []Request
		Stats Stats
	}{h.sim.RequestLog(), h.sim.Stats()})
	g.Expect(err).NotTo(HaveOccurred())
	for _, s := range append(h.sim.IssuedSecrets(), writerToken, globalKey, keyEmail) {
		g.Expect(string(dump)).NotTo(ContainSubstring(s))
	}
	g.Expect(h.sim.IssuedSecrets()).To(HaveLen(2))
}

func TestTheRequestLogNamesEachCredentialByAOneWayID(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"mine"}`)
	h.callAs("GET", acct, "", readOnly)
	h.callAs("GET", acct, "", legacyKey)
	h.sim.SetFaults(always(FaultDropResponse))
	_, err := h.send("POST", acct, `{"name":"lost"}`, bearer)
	g.Expect(err).To(HaveOccurred())
	lost := h.sim.Tokens()[1]

	var log []Request
	g.Expect(h.control("GET", "/_sim/requests", nil, "", &log)).To(Equal(200))
	g.Expect(log).To(HaveLen(4))
	g.Expect(log[0].Credential).To(Equal(CredentialID(writerToken)))
	g.Expect(log[0].CreatedTokenID).To(Equal(tok.ID))
	g.Expect(log[1].Credential).To(Equal(CredentialID(readerToken)))
	g.Expect(log[1].Credential).NotTo(Equal(log[0].Credential))
	g.Expect(log[2].Credential).To(HaveLen(12))
	g.Expect(log[2].Credential).NotTo(BeElementOf(CredentialID(writerToken), CredentialID(readerToken)))
	g.Expect(log[3].Credential).To(Equal(CredentialID(writerToken)))
	g.Expect(log[3].CreatedTokenID).To(Equal(lost.ID), "a create whose response was dropped still names its token")

	raw, err := json.Marshal(log)
	g.Expect(err).NotTo(HaveOccurred())
	for _, s := range []string{writerToken, readerToken, globalKey, keyEmail} {
		g.Expect(string(raw)).NotTo(ContainSubstring(s))
	}
}
