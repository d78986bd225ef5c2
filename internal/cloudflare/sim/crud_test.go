package sim

import (
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestCreateAnswers201WithTheOnlyCopyOfTheSecret(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)

	r := h.call("POST", acct, `{"name":"ci"}`)
	g.Expect(r.status).To(Equal(http.StatusCreated))
	g.Expect(r.env.Success).To(BeTrue())
	g.Expect(r.env.Errors).To(BeEmpty())
	g.Expect(r.env.Messages).To(BeEmpty())
	tok := r.token()
	g.Expect(tok.ID).To(MatchRegexp(uuidRE.String()))
	g.Expect(tok.ClientID).To(MatchRegexp(clientRE.String()))
	g.Expect(tok.ClientSecret).To(MatchRegexp(secretRE.String()))
	g.Expect(ValidSecretFormat(tok.ClientSecret)).To(BeTrue())
	g.Expect(tok.Name).To(Equal("ci"))
	g.Expect(tok.Duration).To(Equal("8760h"), "the published default")
	g.Expect(tok.Enabled).To(BeTrue(), "enabled defaults to true")
	g.Expect(mustTime(tok.CreatedAt)).To(Equal(t0))
	g.Expect(mustTime(tok.UpdatedAt)).To(Equal(t0))
	g.Expect(keys(r.resultKeys())).To(Equal(createKeys), "access_create_response: no expires_at, no last_seen_at")
	got := h.call("GET", acct+"/"+tok.ID, "")
	g.Expect(mustTime(got.token().ExpiresAt)).To(Equal(t0.Add(8760*time.Hour)), "the default duration, as get shows")
	g.Expect(got.resultKeys()).NotTo(HaveKey("last_seen_at"), "never used yet")

	st := h.state(tok.ID)
	g.Expect(st.AccountID).To(Equal("acc1"))
	g.Expect(st.ZoneID).To(BeEmpty())
	g.Expect(st.ClientSecret).To(Equal(tok.ClientSecret))
	g.Expect(st.ClientSecretVersion).To(Equal(1))
	g.Expect(h.sim.IssuedSecrets()).To(Equal([]string{tok.ClientSecret}))
	g.Expect(h.sim.Verify(tok.ClientID, tok.ClientSecret)).To(BeTrue())
	g.Expect(h.sim.Verify(tok.ClientID, tok.ClientSecret+"x")).To(BeFalse())
}

var (
	createKeys = []string{"client_id", "client_secret", "created_at", "duration", "enabled", "id", "name", "updated_at"}
	tokenKeys  = []string{"client_id", "created_at", "duration", "enabled", "expires_at", "id", "name", "updated_at"}
)

// Create and rotate answer with schema access_create_response (no
// expires_at); every other operation with the token object.
func TestEachOperationAnswersInItsPublishedShape(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.SecretInUpdateResponse = true })
	tok := h.create(`{"name":"shape","duration":"1h"}`)
	item := acct + "/" + tok.ID
	zoneTok := h.call("POST", zone, `{"name":"z"}`).token()
	for _, tc := range []struct {
		name, method, path, body string
		want                     []string
	}{
		{"create", "POST", acct, `{"name":"c"}`, createKeys},
		{"create in a zone", "POST", zone, `{"name":"c"}`, createKeys},
		{"rotate", "POST", item + "/rotate", "", createKeys},
		{"a PUT that rotates, with SecretInUpdateResponse", "PUT", item, `{"client_secret_version":9}`, createKeys},
		{"get", "GET", item, "", tokenKeys},
		{"get in a zone", "GET", zone + "/" + zoneTok.ID, "", tokenKeys},
		{"update", "PUT", item, `{"name":"shape2"}`, tokenKeys},
		{"refresh", "POST", item + "/refresh", "", tokenKeys},
		{"delete", "DELETE", item, "", tokenKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := h.call(tc.method, tc.path, tc.body)
			g.Expect(r.status).To(BeNumerically("<", 300), r.raw)
			g.Expect(keys(r.resultKeys())).To(Equal(tc.want), r.raw)
		})
	}
	g := NewWithT(t)
	for _, tk := range h.call("GET", acct, "").tokens() {
		g.Expect(tk.ExpiresAt).NotTo(BeEmpty(), "list items are token objects")
		g.Expect(tk.ClientSecret).To(BeEmpty())
	}
	// The update response schema has no client_secret: the closed contract
	// flags the secret SecretInUpdateResponse adds, and only that.
	g.Expect(h.v.ResponseViolations()).To(ConsistOf(And(ContainSubstring("PUT "+item), ContainSubstring(`"client_secret" is unsupported`))))
	h.v.Reset()
}

func TestCreateInAZoneKeepsTheTokenInThatZone(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)

	r := h.call("POST", zone, `{"name":"z","duration":"1h"}`)
	g.Expect(r.status).To(Equal(http.StatusCreated))
	tok := r.token()
	g.Expect(tok.ClientSecret).NotTo(BeEmpty())
	g.Expect(h.state(tok.ID).ZoneID).To(Equal("zone1"))
	g.Expect(h.call("GET", zone+"/"+tok.ID, "").status).To(Equal(http.StatusOK))
	g.Expect(h.call("GET", acct+"/"+tok.ID, "").status).To(Equal(http.StatusNotFound), "not visible from an account")
	g.Expect(h.call("GET", zone, "").tokens()).To(HaveLen(1))
	g.Expect(h.call("GET", acct, "").tokens()).To(BeEmpty())
}

func TestOnlyCreateAndRotateEverReturnTheSecret(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"ci"}`)
	rotated := h.call("POST", acct+"/"+tok.ID+"/rotate", "")
	g.Expect(rotated.token().ClientSecret).NotTo(BeEmpty())
	secrets := h.sim.IssuedSecrets()
	g.Expect(secrets).To(HaveLen(2))

	for _, tc := range []struct{ name, method, path, body string }{
		{"get", "GET", acct + "/" + tok.ID, ""},
		{"list", "GET", acct, ""},
		{"list by name", "GET", acct + "?name=ci", ""},
		{"update", "PUT", acct + "/" + tok.ID, `{"name":"ci2"}`},
		{"refresh", "POST", acct + "/" + tok.ID + "/refresh", ""},
		{"delete", "DELETE", acct + "/" + tok.ID, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := h.call(tc.method, tc.path, tc.body)
			g.Expect(r.status).To(Equal(http.StatusOK))
			g.Expect(r.raw).NotTo(ContainSubstring("client_secret"))
			for _, s := range secrets {
				g.Expect(r.raw).NotTo(ContainSubstring(s))
			}
		})
	}
}

func TestAForeverTokenHasNoExpiryAndNeverExpires(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"f","duration":"forever"}`)
	g.Expect(tok.Duration).To(Equal("forever"))
	g.Expect(h.call("GET", acct+"/"+tok.ID, "").resultKeys()).NotTo(HaveKey("expires_at"))
	g.Expect(h.state(tok.ID).ExpiresAt.IsZero()).To(BeTrue())

	h.clock.Step(200 * 365 * 24 * time.Hour)
	g.Expect(h.sim.Verify(tok.ClientID, tok.ClientSecret)).To(BeTrue())
}

func TestACreatedDisabledTokenDoesNotAuthenticate(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"off","enabled":false}`)
	g.Expect(tok.Enabled).To(BeFalse())
	g.Expect(h.sim.Verify(tok.ClientID, tok.ClientSecret)).To(BeFalse())
}

func TestDeleteReturnsTheTokenAndItIsGone(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"gone"}`)

	r := h.call("DELETE", acct+"/"+tok.ID, "")
	g.Expect(r.status).To(Equal(http.StatusOK))
	g.Expect(r.token().ID).To(Equal(tok.ID))
	g.Expect(r.token().Name).To(Equal("gone"))
	g.Expect(h.sim.Tokens()).To(BeEmpty())
	g.Expect(h.sim.Verify(tok.ClientID, tok.ClientSecret)).To(BeFalse())
	g.Expect(h.call("GET", acct+"/"+tok.ID, "").status).To(Equal(http.StatusNotFound))
	g.Expect(h.call("DELETE", acct+"/"+tok.ID, "").status).To(Equal(http.StatusNotFound), "a second delete")
}

func TestAPartialUpdateChangesOnlyWhatItCarries(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"old","duration":"10h"}`)
	before := h.call("GET", acct+"/"+tok.ID, "").token()
	h.clock.Step(time.Hour)

	r := h.call("PUT", acct+"/"+tok.ID, `{"name":"new"}`)
	g.Expect(r.status).To(Equal(http.StatusOK))
	got := r.token()
	g.Expect(got.Name).To(Equal("new"))
	g.Expect(got.Duration).To(Equal("10h"))
	g.Expect(got.ExpiresAt).To(Equal(before.ExpiresAt), "no duration, no new expiry")
	g.Expect(got.Enabled).To(BeTrue())
	g.Expect(mustTime(got.UpdatedAt)).To(Equal(t0.Add(time.Hour)))
	g.Expect(got.CreatedAt).To(Equal(tok.CreatedAt))
	g.Expect(h.sim.Verify(tok.ClientID, tok.ClientSecret)).To(BeTrue(), "the secret is untouched")

	g.Expect(h.call("GET", acct+"?name=new", "").tokens()).To(HaveLen(1))
	g.Expect(h.call("GET", acct+"?name=old", "").tokens()).To(BeEmpty())
}

func TestTokensAreScopedToTheirAccount(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	tok := h.create(`{"name":"mine"}`)
	for _, method := range []string{"GET", "DELETE"} {
		g.Expect(h.call(method, acct2+"/"+tok.ID, "").status).To(Equal(http.StatusNotFound))
	}
	g.Expect(h.call("PUT", acct2+"/"+tok.ID, `{"name":"x"}`).status).To(Equal(http.StatusNotFound))
	g.Expect(h.call("POST", acct2+"/"+tok.ID+"/rotate", "").status).To(Equal(http.StatusNotFound))
	g.Expect(h.state(tok.ID).Name).To(Equal("mine"))
	g.Expect(h.state(tok.ID).ClientSecret).To(Equal(tok.ClientSecret))
}

func TestNamesNeedNotBeUnique(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	a := h.create(`{"name":"same"}`)
	b := h.create(`{"name":"same"}`)
	g.Expect(a.ID).NotTo(Equal(b.ID))
	g.Expect(a.ClientID).NotTo(Equal(b.ClientID))
	g.Expect(a.ClientSecret).NotTo(Equal(b.ClientSecret))
	ids := []string{}
	for _, tk := range h.call("GET", acct+"?name=same", "").tokens() {
		ids = append(ids, tk.ID)
	}
	g.Expect(ids).To(Equal([]string{a.ID, b.ID}), "both, in creation order")
}

func TestTheSameSeedGivesTheSameIDsAndSecrets(t *testing.T) {
	g := NewWithT(t)
	first := newHarness(t).create(`{"name":"x"}`)
	second := newHarness(t).create(`{"name":"x"}`)
	g.Expect(second.ID).To(Equal(first.ID))
	g.Expect(second.ClientSecret).To(Equal(first.ClientSecret))
	other := newHarness(t, func(o *Options) { o.Seed = 0 }).create(`{"name":"x"}`)
	g.Expect(other.ID).NotTo(Equal(first.ID))
	g.Expect(strings.HasPrefix(other.ClientSecret, SecretPrefix)).To(BeTrue())
}
