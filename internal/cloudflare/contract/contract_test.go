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

func TestTheSimulatorsTrafficIsClean(t *testing.T) {
	g := NewWithT(t)
	v := contract.Load(t)
	s := sim.New(sim.Options{Accounts: []string{"acc"}, Zones: []string{"zone"}})
	h := v.Wrap(s)
	for _, scope := range []string{"accounts/acc", "zones/zone"} {
		base := "/client/v4/" + scope + "/access/service_tokens"
		g.Expect(doAuth(t, h, "POST", base, `{"name":"a","duration":"forever"}`).StatusCode).To(Equal(201))
		g.Expect(doAuth(t, h, "GET", base, "").StatusCode).To(Equal(200))
		id := s.Tokens()[len(s.Tokens())-1].ID
		g.Expect(doAuth(t, h, "PUT", base+"/"+id, `{"duration":"1h"}`).StatusCode).To(Equal(200))
		if scope == "accounts/acc" {
			g.Expect(doAuth(t, h, "POST", base+"/"+id+"/rotate", "").StatusCode).To(Equal(200))
			g.Expect(doAuth(t, h, "POST", base+"/"+id+"/refresh", "").StatusCode).To(Equal(200))
		}
		g.Expect(doAuth(t, h, "DELETE", base+"/"+id, "").StatusCode).To(Equal(200))
		g.Expect(doAuth(t, h, "GET", base+"/"+id, "").StatusCode).To(Equal(404))
	}
	g.Expect(v.Violations()).To(BeEmpty())
}

func doAuth(t *testing.T, h http.Handler, method, path, body string) *http.Response {
	t.Helper()
	return do(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer anything")
		h.ServeHTTP(w, r)
	}), method, path, body)
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
