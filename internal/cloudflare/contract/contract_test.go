package contract_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/contract"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

const tokenPath = "/client/v4/accounts/acc/access/service_tokens/f174e90a-fafe-4643-bbbc-4a0ed4fc8415"

const validToken = `{"id":"f174e90a-fafe-4643-bbbc-4a0ed4fc8415","client_id":"88bf3b6d86161464f6509f7219099e57.access",` +
	`"name":"ci","duration":"8760h","enabled":true,"expires_at":"2027-01-01T05:20:00.12345Z",` +
	`"created_at":"2026-01-01T05:20:00Z","updated_at":"2026-01-01T05:20:00Z"}`

// stubTB records what Load and the assertions do to a test.
type stubTB struct {
	testing.TB
	skipped, failed string
}

func (s *stubTB) Helper()                   {}
func (s *stubTB) Skipf(f string, a ...any)  { s.skipped = fmt.Sprintf(f, a...) }
func (s *stubTB) Fatalf(f string, a ...any) { s.failed = fmt.Sprintf(f, a...) }
func (s *stubTB) Errorf(f string, a ...any) { s.failed = fmt.Sprintf(f, a...) }

// fixed answers every request with one canned response.
func fixed(status int, contentType, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

func do(t *testing.T, h http.Handler, method, path, body string) *http.Response {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

func TestLoadFindsTheSchemaBesideTheRepo(t *testing.T) {
	g := NewWithT(t)
	path, err := contract.SpecPath()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(filepath.Base(path)).To(Equal("service-tokens.openapi.json"))
	g.Expect(contract.Load(t)).NotTo(BeNil())
}

func TestAMissingSchemaSkipsLocallyAndFailsInCI(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	for _, tc := range []struct {
		ci                string
		wantSkip, wantErr bool
	}{
		{ci: "", wantSkip: true},
		{ci: "true", wantErr: true},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			g := NewWithT(t)
			t.Setenv(contract.EnvSpec, missing)
			t.Setenv("CI", tc.ci)
			stub := &stubTB{}
			g.Expect(contract.Load(stub)).To(BeNil())
			g.Expect(stub.skipped != "").To(Equal(tc.wantSkip), stub.skipped)
			g.Expect(stub.failed != "").To(Equal(tc.wantErr), stub.failed)
			g.Expect(stub.skipped + stub.failed).To(ContainSubstring(contract.EnvSpec))
		})
	}
}

// Every operation's real simulator response, successes and failures, in
// both scopes and in every list shape, passes the closed contract.
func TestTheSimulatorsTrafficIsCleanUnderTheClosedContract(t *testing.T) {
	const (
		writer = "writer-token-0123456789"
		reader = "reader-token-0123456789"
		email  = "ops@example.com"
		key    = "0123456789abcdef0123456789abcdef01234"
	)
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	for _, variant := range []struct {
		name  string
		tweak func(*sim.Options)
	}{
		{"by default", func(*sim.Options) {}},
		{"with zone pages and no totals", func(o *sim.Options) { o.ZonePageSize, o.OmitTotalPages = 1, true }},
		{"refreshing by the duration from now", func(o *sim.Options) { o.Refresh = sim.RefreshDurationFromNow }},
	} {
		t.Run(variant.name, func(t *testing.T) {
			v := contract.Load(t)
			opts := sim.Options{
				Accounts:  []string{"acc"},
				Zones:     []string{"zone"},
				APITokens: []sim.APIToken{{Token: writer, User: email}, {Token: reader, ReadOnly: true}},
				APIKeys:   []sim.APIKey{{Email: email, Key: key}},
				RateLimit: sim.RateLimit{Requests: 1000, Period: time.Minute},
				Seed:      1,
			}
			variant.tweak(&opts)
			s := sim.New(opts)
			h := v.Wrap(s)
			call := func(hdr http.Header, method, path, body string, want int) {
				t.Helper()
				resp := doWith(t, h, hdr, method, path, body)
				if resp.StatusCode != want {
					t.Errorf("%s %s: status %d, want %d", method, path, resp.StatusCode, want)
				}
			}
			w := bearer(writer)
			for _, scope := range []string{"accounts/acc", "zones/zone"} {
				base := "/client/v4/" + scope + "/access/service_tokens"
				call(w, "POST", base, `{"name":"a","duration":"forever"}`, 201)
				call(w, "POST", base, `{"name":"b","duration":"1h","enabled":false}`, 201)
				id := s.Tokens()[len(s.Tokens())-1].ID
				call(w, "GET", base, "", 200)
				call(w, "GET", base+"?page=2", "", 200)
				call(w, "GET", base+"?page=99", "", 200)
				call(w, "GET", base+"/"+id, "", 200)
				call(w, "PUT", base+"/"+id, `{"duration":"2h","name":"b2","enabled":true}`, 200)
				call(w, "PUT", base+"/"+id, `{"client_secret_version":2,"previous_client_secret_expires_at":"2030-01-01T00:00:00Z"}`, 200)
				if scope == "accounts/acc" {
					call(w, "GET", base+"?name=b2&search=B&per_page=1", "", 200)
					call(w, "POST", base+"/"+id+"/rotate", "", 200)
					call(w, "POST", base+"/"+id+"/rotate", `{"previous_client_secret_expires_at":"2030-01-01T00:00:00Z"}`, 200)
					call(w, "POST", base+"/"+id+"/refresh", "", 200)
					call(w, "POST", base+"/"+s.Tokens()[0].ID+"/refresh", "", 200) // forever
				}
				// The failures a client meets.
				call(bearer(reader), "POST", base, `{"name":"ro"}`, 403)
				call(bearer(reader), "DELETE", base+"/00000000-0000-0000-0000-000000000000", "", 403)
				call(bearer("unknown-token"), "GET", base, "", 401)
				call(http.Header{}, "GET", base, "", 401)
				call(http.Header{"Authorization": {"Basic x"}}, "GET", base, "", 400)
				call(http.Header{"X-Auth-Email": {"ops"}, "X-Auth-Key": {"not-hex"}}, "GET", base, "", 400)
				call(w, "POST", base, `{"name":"x","duration":"soon"}`, 400)
				call(w, "GET", base+"/00000000-0000-0000-0000-000000000000", "", 404)
				unknown := "/client/v4/" + strings.Split(scope, "/")[0] + "/nope/access/service_tokens"
				call(w, "GET", unknown, "", 404)
				call(w, "PUT", unknown+"/"+id, `{"name":"x"}`, 404)
				call(w, "DELETE", base+"/"+id, "", 200)
			}
			// A lockout's 429.
			s.SpendBudget(email, 1000)
			call(w, "GET", "/client/v4/accounts/acc/access/service_tokens", "", 429)
			g := NewWithT(t)
			g.Expect(v.Violations()).To(BeEmpty())
		})
	}
}

func doWith(t *testing.T, h http.Handler, hdr http.Header, method, path, body string) *http.Response {
	t.Helper()
	return do(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, vs := range hdr {
			r.Header[k] = vs
		}
		h.ServeHTTP(w, r)
	}), method, path, body)
}

func TestAResponseWithAnUndocumentedFieldIsReported(t *testing.T) {
	const (
		list       = "/client/v4/accounts/acc/access/service_tokens"
		zoneList   = "/client/v4/zones/zone/access/service_tokens"
		createBody = `{"id":"f174e90a-fafe-4643-bbbc-4a0ed4fc8415","client_id":"c.access","client_secret":"s","name":"ci",` +
			`"duration":"8760h","enabled":true,"created_at":"2026-01-01T05:20:00Z","updated_at":"2026-01-01T05:20:00Z"`
		ok   = `{"success":true,"errors":[],"messages":[],"result":`
		fail = `{"success":false,"messages":[],"result":null,"errors":`
	)
	info := `"result_info":{"page":1,"per_page":20,"count":1,"total_count":1,"total_pages":1`
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
		want               string
	}{
		{"expires_at in a create response", "POST", list, 201, ok + createBody + `,"expires_at":"2027-01-01T05:20:00Z"}}`, `"expires_at" is unsupported`},
		{"expires_at in a zone create response", "POST", zoneList, 201, ok + createBody + `,"expires_at":"2027-01-01T05:20:00Z"}}`, `"expires_at" is unsupported`},
		{"last_seen_at in a rotate response", "POST", tokenPath + "/rotate", 200, ok + createBody + `,"last_seen_at":"2026-01-01T05:20:00Z"}}`, `"last_seen_at" is unsupported`},
		{"a client_secret in a get response", "GET", tokenPath, 200, ok + strings.TrimSuffix(validToken, "}") + `,"client_secret":"s"}}`, `"client_secret" is unsupported`},
		{"an unknown field in a token", "PUT", tokenPath, 200, ok + strings.TrimSuffix(validToken, "}") + `,"colour":"blue"}}`, `"colour" is unsupported`},
		{"an unknown field in a list item", "GET", list, 200, ok + `[` + strings.TrimSuffix(validToken, "}") + `,"colour":"blue"}],` + info + `}}`, `"colour" is unsupported`},
		{"an unknown field in result_info", "GET", list, 200, ok + `[],` + info + `,"cursor":"abc"}}`, `"cursor" is unsupported`},
		{"an unknown field in the envelope", "GET", tokenPath, 200, `{"success":true,"errors":[],"messages":[],"ray":"x","result":` + validToken + `}`, `"ray" is unsupported`},
		{"result_info in a single-token envelope", "GET", tokenPath, 200, ok + validToken + `,` + info + `}}`, `"result_info" is unsupported`},
		{"an unknown field in a failure envelope", "GET", tokenPath, 404, `{"success":false,"messages":[],"result":null,"ray":"x","errors":[{"code":10404,"message":"m"}]}`, `"ray" is unsupported`},
		{"an unknown field in an error", "GET", tokenPath, 404, fail + `[{"code":10404,"message":"m","hint":"h"}]}`, `"hint" is unsupported`},
		{"an unknown field in an error's source", "GET", tokenPath, 400, fail + `[{"code":10400,"message":"m","source":{"pointer":"/a","line":1}}]}`, `"line" is unsupported`},
		{"an unknown field in an error_chain link", "GET", tokenPath, 400, fail + `[{"code":6003,"message":"m","error_chain":[{"code":6111,"message":"m","hint":"h"}]}]}`, `"hint" is unsupported`},
		{"an error_chain in a message", "GET", tokenPath, 400, `{"success":false,"result":null,"errors":[{"code":6003,"message":"m"}],"messages":[{"code":6111,"message":"m","error_chain":[]}]}`, `"error_chain" is unsupported`},
		{"an error_chain in a success", "GET", tokenPath, 200, `{"success":true,"messages":[],"result":` + validToken + `,"errors":[{"code":6003,"message":"m","error_chain":[]}]}`, `"error_chain" is unsupported`},
		{"an error_chain that is not a list", "GET", tokenPath, 400, fail + `[{"code":6003,"message":"m","error_chain":{"code":6111}}]}`, `error_chain`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			v := contract.Load(t)
			body := ""
			if tc.method != "GET" {
				body = `{"name":"a"}`
			}
			do(t, v.Wrap(fixed(tc.status, "application/json", tc.body)), tc.method, tc.path, body)
			g.Expect(v.RequestViolations()).To(BeEmpty())
			g.Expect(v.ResponseViolations()).To(ConsistOf(ContainSubstring(tc.want)))
		})
	}
}

func TestTheClosedContractStillAcceptsEveryDocumentedField(t *testing.T) {
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"a token with every field", "GET", tokenPath, 200, `{"success":true,"errors":[],"messages":[],"result":` +
			strings.TrimSuffix(validToken, "}") + `,"last_seen_at":"2026-01-02T05:20:00Z"}}`},
		{"a token with no field", "GET", tokenPath, 200, `{"success":true,"errors":[],"messages":[],"result":{}}`},
		{"a list with every result_info field", "GET", "/client/v4/accounts/acc/access/service_tokens", 200,
			`{"success":true,"errors":[],"messages":[],"result":[` + validToken + `],"result_info":{"page":1,"per_page":20,"count":1,"total_count":1,"total_pages":1}}`},
		{"a zone list without result_info", "GET", "/client/v4/zones/zone/access/service_tokens", 200, `{"success":true,"errors":[],"messages":[],"result":[]}`},
		{"an error with every documented field", "GET", tokenPath, 404,
			`{"success":false,"result":null,"messages":[{"code":1000,"message":"m"}],"errors":[{"code":7003,"message":"m","documentation_url":"https://x","source":{"pointer":"/p"}}]}`},
		{"a 6003 with its error_chain", "GET", tokenPath, 400,
			`{"success":false,"result":null,"messages":[],"errors":[{"code":6003,"message":"Invalid request headers","error_chain":[{"code":6111,"message":"Invalid format for Authorization header"}]}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			v := contract.Load(t)
			do(t, v.Wrap(fixed(tc.status, "application/json", tc.body)), tc.method, tc.path, "")
			g.Expect(v.Violations()).To(BeEmpty())
		})
	}
}

// Closing is for responses: a request may carry fields the schema does not
// list.
func TestRequestsStayOpen(t *testing.T) {
	g := NewWithT(t)
	v := contract.Load(t)
	do(t, v.Wrap(fixed(201, "application/json", `{"success":true,"errors":[],"messages":[],"result":{}}`)),
		"POST", "/client/v4/accounts/acc/access/service_tokens", `{"name":"a","colour":"blue"}`)
	g.Expect(v.Violations()).To(BeEmpty())
}

func TestAnInvalidResponseIsReported(t *testing.T) {
	for _, tc := range []struct {
		name, method, path string
		status             int
		contentType, body  string
		want               string
	}{
		{"create answering 200 instead of 201", "POST", "/client/v4/accounts/acc/access/service_tokens", 200, "application/json",
			`{"success":true,"errors":[],"messages":[],"result":` + validToken + `}`, "status is not supported"},
		{"an envelope without errors and messages", "GET", tokenPath, 200, "application/json",
			`{"success":true,"result":` + validToken + `}`, "errors"},
		{"a client_id that is not a string", "GET", tokenPath, 200, "application/json",
			`{"success":true,"errors":[],"messages":[],"result":{"id":"x","client_id":5}}`, "client_id"},
		{"an expires_at that is not a date-time", "GET", tokenPath, 200, "application/json",
			`{"success":true,"errors":[],"messages":[],"result":{"expires_at":"tomorrow"}}`, "expires_at"},
		{"a failure with a result", "GET", tokenPath, 404, "application/json",
			`{"success":false,"errors":[{"code":10404,"message":"nope"}],"messages":[],"result":{}}`, "result"},
		{"a failure claiming success", "GET", tokenPath, 404, "application/json",
			`{"success":true,"errors":[{"code":10404,"message":"nope"}],"messages":[],"result":null}`, "success"},
		{"an error code below 1000", "GET", tokenPath, 429, "application/json",
			`{"success":false,"errors":[{"code":971,"message":"slow down"}],"messages":[],"result":null}`, "code"},
		{"a JSON 500", "GET", tokenPath, 500, "application/json",
			`{"success":false,"errors":[{"code":10500,"message":"boom"}],"messages":[],"result":null}`, "status is not supported"},
		{"a success answered as text", "GET", tokenPath, 200, "text/plain", `ok`, "text/plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			v := contract.Load(t)
			body := ""
			if tc.method == "POST" {
				body = `{"name":"a"}`
			}
			do(t, v.Wrap(fixed(tc.status, tc.contentType, tc.body)), tc.method, tc.path, body)
			g.Expect(v.RequestViolations()).To(BeEmpty())
			g.Expect(v.ResponseViolations()).To(ConsistOf(ContainSubstring(tc.want)))

			stub := &stubTB{}
			v.AssertClean(stub)
			g.Expect(stub.failed).To(ContainSubstring("1 OpenAPI contract violation"))
		})
	}
}

func TestAValidFailureEnvelopeIsClean(t *testing.T) {
	g := NewWithT(t)
	v := contract.Load(t)
	do(t, v.Wrap(fixed(404, "application/json",
		`{"success":false,"errors":[{"code":10404,"message":"service token not found"}],"messages":[],"result":null}`)),
		"GET", tokenPath, "")
	g.Expect(v.Violations()).To(BeEmpty())
}

func TestAnInvalidRequestIsReported(t *testing.T) {
	ok := fixed(200, "application/json", `{"success":true,"errors":[],"messages":[],"result":[]}`)
	for _, tc := range []struct {
		name, method, path, body string
		want                     string
	}{
		{"create without a name", "POST", "/client/v4/accounts/acc/access/service_tokens", `{"duration":"1h"}`, "name"},
		{"create with a numeric name", "POST", "/client/v4/accounts/acc/access/service_tokens", `{"name":7}`, "name"},
		{"per_page over 1000", "GET", "/client/v4/accounts/acc/access/service_tokens?per_page=5000", "", "per_page"},
		{"a non-integer page", "GET", "/client/v4/accounts/acc/access/service_tokens?page=two", "", "page"},
		{"an account ID longer than 32", "GET", "/client/v4/accounts/" + strings.Repeat("a", 33) + "/access/service_tokens", "", "account_id"},
		{"a method the path does not have", "PATCH", tokenPath, `{}`, "no matching operation"},
		{"refresh of a zone token", "POST", "/client/v4/zones/z/access/service_tokens/x/refresh", "", "no matching operation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			v := contract.Load(t)
			do(t, v.Wrap(ok), tc.method, tc.path, tc.body)
			g.Expect(v.RequestViolations()).To(ConsistOf(ContainSubstring(tc.want)))
		})
	}
}

func TestNonJSON5xxIsExemptAndOtherPathsAreNotChecked(t *testing.T) {
	g := NewWithT(t)
	v := contract.Load(t)
	do(t, v.Wrap(fixed(502, "text/html", "<html>bad gateway</html>")), "GET", tokenPath, "")
	do(t, v.Wrap(fixed(200, "text/plain", "whatever")), "GET", "/_sim/stats", "")
	g.Expect(v.Violations()).To(BeEmpty())
	g.Expect(v.Exempted()).To(Equal(1))
}

func TestAHijackedConnectionIsNotValidated(t *testing.T) {
	g := NewWithT(t)
	v := contract.Load(t)
	srv := httptest.NewServer(v.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})))
	defer srv.Close()
	_, err := srv.Client().Post(srv.URL+"/client/v4/accounts/acc/access/service_tokens", "application/json", bytes.NewBufferString(`{"name":"a"}`))
	g.Expect(err).To(HaveOccurred())
	g.Expect(v.Violations()).To(BeEmpty())
}

func TestValidateExchangeChecksARecordedExchange(t *testing.T) {
	g := NewWithT(t)
	v := contract.Load(t)
	req := httptest.NewRequest("GET", tokenPath, nil)
	h := http.Header{"Content-Type": {"application/json"}}
	v.ValidateExchange(req, nil, 200, h, []byte(`{"success":true,"errors":[],"messages":[],"result":`+validToken+`}`))
	g.Expect(v.Violations()).To(BeEmpty())
	v.ValidateExchange(req, nil, 200, h, []byte(`{"success":"yes"}`))
	g.Expect(v.ResponseViolations()).To(HaveLen(1))
	v.Reset()
	g.Expect(v.Violations()).To(BeEmpty())
}
