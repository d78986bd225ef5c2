package sim

import (
	"net/http"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestInvalidBodiesAreA400WithAUsefulMessage(t *testing.T) {
	h := newHarness(t)
	// Most of these bodies break the schema too; the responses must not.
	h.invalidRequests = true
	existing := h.create(`{"name":"existing","duration":"1h"}`)
	before := h.state(existing.ID)
	item := acct + "/" + existing.ID

	for _, tc := range []struct {
		name, method, path, body string
		want                     string // a substring of the message
	}{
		{"create with malformed JSON", "POST", acct, `{"name":`, "request body is not valid JSON"},
		{"create with a JSON array", "POST", acct, `[]`, "request body must be a JSON object"},
		{"create with no body", "POST", acct, ``, "request body is required"},
		{"create without a name", "POST", acct, `{"duration":"1h"}`, "name is required"},
		{"create with an empty name", "POST", acct, `{"name":""}`, "name must not be empty"},
		{"create with a numeric name", "POST", acct, `{"name":42}`, `invalid value for "name": want a string, got number`},
		{"create with a duration without unit", "POST", acct, `{"name":"x","duration":"10"}`, `invalid duration "10"`},
		{"create with a nonsense duration", "POST", acct, `{"name":"x","duration":"a while"}`, `units ns, us, µs, ms, s, m, h) or "forever"`},
		{"create with a negative duration", "POST", acct, `{"name":"x","duration":"-5m"}`, `invalid duration "-5m": want a positive duration`},
		{"create with a zero duration", "POST", acct, `{"name":"x","duration":"0s"}`, `invalid duration "0s"`},
		{"create with a boolean as enabled string", "POST", acct, `{"name":"x","enabled":"yes"}`, `invalid value for "enabled": want a boolean`},
		{"create with a fractional secret version", "POST", acct, `{"name":"x","client_secret_version":1.5}`, "client_secret_version must be a whole number"},
		{"update with a bad duration", "PUT", item, `{"duration":"1 year"}`, `invalid duration "1 year"`},
		{"update with an empty name", "PUT", item, `{"name":""}`, "name must not be empty"},
		{"update with no body", "PUT", item, ``, "request body is required"},
		{"update with a bad grace time", "PUT", item, `{"previous_client_secret_expires_at":"tomorrow"}`, `"tomorrow" is not an RFC 3339 date-time`},
		{"update with a bad duration and a good name", "PUT", item, `{"name":"renamed","duration":"soon"}`, `invalid duration "soon"`},
		{"rotate with malformed JSON", "POST", item + "/rotate", `{`, "request body is not valid JSON"},
		{"rotate with a bad grace time", "POST", item + "/rotate", `{"previous_client_secret_expires_at":"2026-13-01"}`, "is not an RFC 3339 date-time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r := h.call(tc.method, tc.path, tc.body)
			g.Expect(r.status).To(Equal(http.StatusBadRequest))
			g.Expect(r.env.Success).To(BeFalse())
			g.Expect(r.code()).To(Equal(CodeInvalidRequest))
			g.Expect(r.message()).To(ContainSubstring(tc.want))
			g.Expect(string(r.env.Result)).To(Equal("null"))
		})
	}

	g := NewWithT(t)
	g.Expect(h.sim.Tokens()).To(HaveLen(1), "no invalid create got through")
	g.Expect(h.state(existing.ID)).To(Equal(before), "no invalid update or rotate changed anything, not even in part")
}

func TestABodyOverOneMebibyteIsA400(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	h.invalidRequests = true
	r := h.call("POST", acct, `{"name":"`+strings.Repeat("n", maxBodyBytes)+`"}`)
	g.Expect(r.status).To(Equal(http.StatusBadRequest))
	g.Expect(r.message()).To(ContainSubstring("larger than 1 MiB"))
}

func TestUnknownFieldsAreIgnored(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	r := h.call("POST", acct, `{"name":"x","colour":"blue"}`)
	g.Expect(r.status).To(Equal(http.StatusCreated))
	g.Expect(r.raw).NotTo(ContainSubstring("colour"))
}
