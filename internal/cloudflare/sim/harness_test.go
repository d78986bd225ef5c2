package sim

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/contract"
)

const (
	writerToken = "writer-api-token-0123456789"
	readerToken = "reader-api-token-0123456789"
	keyEmail    = "ops@example.com"
	globalKey   = "0123456789abcdef0123456789abcdef01234" // 37 hex, like Cloudflare's

	acct  = "/client/v4/accounts/acc1/access/service_tokens"
	acct2 = "/client/v4/accounts/acc2/access/service_tokens"
	zone  = "/client/v4/zones/zone1/access/service_tokens"
)

var (
	t0        = time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	uuidRE    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	clientRE  = regexp.MustCompile(`^[0-9a-f]{32}\.access$`)
	secretRE  = regexp.MustCompile(`^cfast_[A-Za-z0-9]{40}[0-9a-f]{8}$`)
	bearer    = auth("Authorization", "Bearer "+writerToken)
	readOnly  = auth("Authorization", "Bearer "+readerToken)
	legacyKey = func(r *http.Request) { r.Header.Set("X-Auth-Email", keyEmail); r.Header.Set("X-Auth-Key", globalKey) }
	noAuth    = func(*http.Request) {}
)

func auth(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }

// harness is the simulator behind the contract validator on a real HTTP
// server, with a fake clock.
type harness struct {
	t     *testing.T
	sim   *Server
	srv   *httptest.Server
	v     *contract.Validator
	clock *clocktesting.FakeClock
	// invalidRequests: the test sends schema-invalid requests on purpose, so
	// only responses must be clean.
	invalidRequests bool
}

// newHarness starts a simulator with two accounts, one zone, a writer and a
// read-only API token, a legacy key, no rate limit and a fake clock at t0.
func newHarness(t *testing.T, tweak ...func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, v: contract.Load(t), clock: clocktesting.NewFakeClock(t0)}
	opts := Options{
		Accounts:  []string{"acc1", "acc2"},
		Zones:     []string{"zone1"},
		APITokens: []APIToken{{Token: writerToken}, {Token: readerToken, ReadOnly: true}},
		APIKeys:   []APIKey{{Email: keyEmail, Key: globalKey}},
		RateLimit: RateLimit{Requests: -1},
		Clock:     h.clock,
		Seed:      1,
	}
	for _, f := range tweak {
		f(&opts)
	}
	h.sim = New(opts)
	h.srv = httptest.NewServer(h.v.Wrap(h.sim))
	t.Cleanup(func() {
		h.srv.Close()
		if h.invalidRequests {
			h.v.AssertResponsesClean(t)
		} else {
			h.v.AssertClean(t)
		}
	})
	return h
}

// reply is a decoded API response.
type reply struct {
	status int
	header http.Header
	raw    string
	env    struct {
		Success    bool            `json:"success"`
		Errors     []apiError      `json:"errors"`
		Messages   []apiError      `json:"messages"`
		Result     json.RawMessage `json:"result"`
		ResultInfo *resultInfo     `json:"result_info"`
	}
}

// tokenReply holds any token result: the token object or the create shape.
// Tests that care which fields are present use resultKeys.
type tokenReply struct {
	tokenJSON
	ClientSecret string `json:"client_secret"`
}

// token decodes the result as one token.
func (r reply) token() tokenReply {
	var t tokenReply
	if err := json.Unmarshal(r.env.Result, &t); err != nil {
		panic("result is not a token: " + r.raw)
	}
	return t
}

// tokens decodes the result as a list.
func (r reply) tokens() []tokenReply {
	var ts []tokenReply
	if err := json.Unmarshal(r.env.Result, &ts); err != nil {
		panic("result is not a list: " + r.raw)
	}
	return ts
}

// resultKeys returns the keys of the result object.
func (r reply) resultKeys() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.env.Result, &m)
	return m
}

// keys returns the sorted keys of a JSON object's map.
func keys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

func (r reply) code() int {
	if len(r.env.Errors) == 0 {
		return 0
	}
	return r.env.Errors[0].Code
}

func (r reply) message() string {
	if len(r.env.Errors) == 0 {
		return ""
	}
	return r.env.Errors[0].Message
}

// send makes a request and returns the transport error, if any.
func (h *harness) send(method, path, body string, as func(*http.Request)) (reply, error) {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	as(req)
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		return reply{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.env); err != nil {
			h.t.Fatalf("%s %s: body is not JSON: %s", method, path, b)
		}
	}
	return r, nil
}

// call is send with the writer token that must reach the server.
func (h *harness) call(method, path, body string) reply {
	h.t.Helper()
	return h.callAs(method, path, body, bearer)
}

func (h *harness) callAs(method, path, body string, as func(*http.Request)) reply {
	h.t.Helper()
	r, err := h.send(method, path, body, as)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// create makes an account token and returns the create response's token
// (with its secret and without expires_at).
func (h *harness) create(body string) tokenReply {
	h.t.Helper()
	r := h.call("POST", acct, body)
	if r.status != http.StatusCreated {
		h.t.Fatalf("create: %d %s", r.status, r.raw)
	}
	return r.token()
}

func (h *harness) state(id string) TokenState {
	h.t.Helper()
	t, ok := h.sim.Token(id)
	if !ok {
		h.t.Fatalf("token %s not in the simulator", id)
	}
	return t
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func jsonBody(v any) string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return b.String()
}
