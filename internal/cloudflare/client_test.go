package cloudflare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
)

const (
	testAccount  = "0123456789abcdef0123456789abcdef"
	testZone     = "fedcba9876543210fedcba9876543210"
	testTokenID  = "f174e90a-fafe-4643-bbbc-4a0ed4fc8415"
	testAPIToken = "test-api-token-ZX81"
)

var testEpoch = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)

// newTestClient builds a client through the factory against baseURL (the
// /client/v4 prefix is added) with a fake clock and a generous budget.
func newTestClient(t *testing.T, baseURL string, opts FactoryOptions) (*client, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(testEpoch)
	if opts.Clock == nil {
		opts.Clock = clk
	}
	f := NewFactory(opts)
	c, err := f.ClientFor(AccountConfig{
		Key:       "ClusterCloudflareAccount//test",
		BaseURL:   baseURL + "/client/v4",
		APIToken:  testAPIToken,
		RateLimit: RateLimit{Requests: 100000, Period: time.Second},
	})
	if err != nil {
		t.Fatalf("ClientFor: %v", err)
	}
	return c.(*client), clk
}

// op is one Client method with the request it must produce.
type op struct {
	name     string
	method   string
	path     string
	mutating bool
	call     func(ctx context.Context, c Client) error
}

var allOps = []op{
	{"list", http.MethodGet, "/accounts/" + testAccount + "/access/service_tokens", false, func(ctx context.Context, c Client) error {
		_, err := c.List(ctx, Scope{AccountID: testAccount}, ListOptions{})
		return err
	}},
	{"get", http.MethodGet, "/accounts/" + testAccount + "/access/service_tokens/" + testTokenID, false, func(ctx context.Context, c Client) error {
		_, err := c.Get(ctx, Scope{AccountID: testAccount}, testTokenID)
		return err
	}},
	{"update", http.MethodPut, "/accounts/" + testAccount + "/access/service_tokens/" + testTokenID, false, func(ctx context.Context, c Client) error {
		_, err := c.Update(ctx, Scope{AccountID: testAccount}, testTokenID, TokenSpec{Name: "n", Enabled: true})
		return err
	}},
	{"refresh", http.MethodPost, "/accounts/" + testAccount + "/access/service_tokens/" + testTokenID + "/refresh", false, func(ctx context.Context, c Client) error {
		_, err := c.Refresh(ctx, testAccount, testTokenID)
		return err
	}},
	{"create", http.MethodPost, "/accounts/" + testAccount + "/access/service_tokens", true, func(ctx context.Context, c Client) error {
		_, err := c.Create(ctx, Scope{AccountID: testAccount}, TokenSpec{Name: "n", Enabled: true})
		return err
	}},
	{"rotate", http.MethodPost, "/accounts/" + testAccount + "/access/service_tokens/" + testTokenID + "/rotate", true, func(ctx context.Context, c Client) error {
		_, err := c.Rotate(ctx, testAccount, testTokenID, testEpoch.Add(time.Hour))
		return err
	}},
	{"delete", http.MethodDelete, "/accounts/" + testAccount + "/access/service_tokens/" + testTokenID, true, func(ctx context.Context, c Client) error {
		return c.Delete(ctx, Scope{AccountID: testAccount}, testTokenID)
	}},
}

func failure(code int, msg string) string {
	return fmt.Sprintf(`{"success":false,"errors":[{"code":%d,"message":%q}],"messages":[],"result":null}`, code, msg)
}

func reply(status int, contentType, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

const htmlBody = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"

func hangUp(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

func stall(w http.ResponseWriter, r *http.Request) {
	// Drain the body so the server notices the client hanging up.
	_, _ = io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

type errCase struct {
	name    string
	handler http.HandlerFunc
	refused bool          // close the server before calling
	timeout time.Duration // per-request timeout (default 10s)
	// kind for reads and for create/rotate/delete
	readKind, mutatingKind ErrorKind
	status                 int
	codes                  []int
	ray                    string
	message                string
	retryAfter             time.Duration
	deleteSucceeds         bool // delete needs no result: any 2xx envelope is done
}

func errorCases() []errCase {
	json := "application/json"
	return []errCase{
		{name: "404 token", handler: reply(404, json, failure(10404, "service token not found"), "CF-Ray", "8a1b2c3d4e5f6a7b-LHR"),
			readKind: KindNotFound, mutatingKind: KindNotFound, status: 404, codes: []int{10404}, ray: "8a1b2c3d4e5f6a7b-LHR", message: "not found"},
		// An unknown account or zone is no proof that a token is gone.
		{name: "404 code 7003", handler: reply(404, json, failure(7003, "Could not route to /accounts/x/access/service_tokens, perhaps your object identifier is invalid?"), "CF-Ray", "ray-7003"),
			readKind: KindUnreachable, mutatingKind: KindUnreachable, status: 404, codes: []int{7003}, ray: "ray-7003", message: "Could not route"},
		{name: "400 code 7003", handler: reply(400, json, failure(7003, "Could not route to /zones/x")),
			readKind: KindUnreachable, mutatingKind: KindUnreachable, status: 400, codes: []int{7003}, message: "Could not route"},
		{name: "404 code 7000", handler: reply(404, json, failure(7000, "No route for that URI")),
			readKind: KindUnreachable, mutatingKind: KindUnreachable, status: 404, codes: []int{7000}, message: "No route"},
		// Malformed credentials: the error_chain names the header.
		{name: "400 code 6003", handler: reply(400, json, `{"success":false,"errors":[{"code":6003,"message":"Invalid request headers","error_chain":[{"code":6111,"message":"Invalid format for Authorization header"}]}],"messages":[],"result":null}`),
			readKind: KindAuth, mutatingKind: KindAuth, status: 400, codes: []int{6003, 6111}, message: "Invalid request headers (Invalid format for Authorization header)"},
		{name: "401", handler: reply(401, json, failure(10000, "Authentication error"), "CF-Ray", "ray-401"),
			readKind: KindAuth, mutatingKind: KindAuth, status: 401, codes: []int{10000}, ray: "ray-401"},
		{name: "403 code 10000", handler: reply(403, json, failure(10000, "Authentication error"), "CF-Ray", "ray-403"),
			readKind: KindAuth, mutatingKind: KindAuth, status: 403, codes: []int{10000}, ray: "ray-403", message: "Authentication error"},
		{name: "400 with message", handler: reply(400, json, failure(12130, "duration: invalid duration"), "CF-Ray", "ray-400"),
			readKind: KindInvalid, mutatingKind: KindInvalid, status: 400, codes: []int{12130}, ray: "ray-400", message: "duration: invalid duration"},
		{name: "422", handler: reply(422, json, failure(1001, "unprocessable")),
			readKind: KindInvalid, mutatingKind: KindInvalid, status: 422, codes: []int{1001}},
		// Not applied: safe to retry, like the SDK does.
		{name: "409", handler: reply(409, json, failure(1002, "conflict")),
			readKind: KindTransient, mutatingKind: KindTransient, status: 409, codes: []int{1002}},
		{name: "408", handler: reply(408, "text/plain", "request timeout"),
			readKind: KindTransient, mutatingKind: KindTransient, status: 408, message: "Request Timeout"},
		{name: "418 other 4xx", handler: reply(418, json, failure(1003, "teapot")),
			readKind: KindInvalid, mutatingKind: KindInvalid, status: 418, codes: []int{1003}},
		{name: "429 seconds", handler: reply(429, json, failure(971, "Please wait and consider throttling your request speed"), "Retry-After", "7", "CF-Ray", "ray-429"),
			readKind: KindRateLimited, mutatingKind: KindRateLimited, status: 429, codes: []int{971}, ray: "ray-429", retryAfter: 7 * time.Second},
		{name: "429 http date", handler: reply(429, json, failure(971, "slow down"), "Retry-After", testEpoch.Add(90*time.Second).Format(http.TimeFormat)),
			readKind: KindRateLimited, mutatingKind: KindRateLimited, status: 429, codes: []int{971}, retryAfter: 90 * time.Second},
		{name: "429 without Retry-After", handler: reply(429, "text/plain", "rate limited"),
			readKind: KindRateLimited, mutatingKind: KindRateLimited, status: 429, retryAfter: defaultRetryAfter},
		{name: "500 html", handler: reply(500, "text/html", htmlBody, "CF-Ray", "ray-500"),
			readKind: KindTransient, mutatingKind: KindOutcomeUnknown, status: 500, ray: "ray-500"},
		{name: "502 html", handler: reply(502, "text/html", htmlBody, "CF-Ray", "ray-502"),
			readKind: KindTransient, mutatingKind: KindOutcomeUnknown, status: 502, ray: "ray-502"},
		{name: "503 json", handler: reply(503, json, failure(10013, "service unavailable")),
			readKind: KindTransient, mutatingKind: KindOutcomeUnknown, status: 503, codes: []int{10013}},
		{name: "2xx html body", handler: reply(200, "text/html", htmlBody, "CF-Ray", "ray-200"),
			readKind: KindTransient, mutatingKind: KindOutcomeUnknown, status: 200, ray: "ray-200"},
		{name: "2xx without result", handler: reply(200, json, `{"success":true,"errors":[],"messages":[],"result":null}`),
			readKind: KindTransient, mutatingKind: KindOutcomeUnknown, status: 200, deleteSucceeds: true},
		{name: "2xx saying success false", handler: reply(200, json, failure(10001, "internal"), "CF-Ray", "ray-sf"),
			readKind: KindTransient, mutatingKind: KindOutcomeUnknown, status: 200, codes: []int{10001}, ray: "ray-sf"},
		{name: "connection reset", handler: hangUp,
			readKind: KindTransient, mutatingKind: KindOutcomeUnknown},
		{name: "timeout", handler: stall, timeout: 300 * time.Millisecond,
			readKind: KindTransient, mutatingKind: KindOutcomeUnknown},
		{name: "connection refused", handler: hangUp, refused: true,
			readKind: KindTransient, mutatingKind: KindTransient},
	}
}

func TestErrorClassification(t *testing.T) {
	for _, tc := range errorCases() {
		for _, o := range allOps {
			t.Run(tc.name+"/"+o.name, func(t *testing.T) {
				g := NewWithT(t)
				var hits atomic.Int32
				var gotRoute atomic.Value
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					hits.Add(1)
					gotRoute.Store(r.Method + " " + strings.TrimPrefix(r.URL.Path, "/client/v4"))
					tc.handler(w, r)
				}))
				defer srv.Close()
				if tc.refused {
					srv.Close()
				}
				c, _ := newTestClient(t, srv.URL, FactoryOptions{RequestTimeout: tc.timeout})

				err := o.call(context.Background(), c)
				if tc.deleteSucceeds && o.name == "delete" {
					g.Expect(err).NotTo(HaveOccurred())
					return
				}

				var e *Error
				g.Expect(errors.As(err, &e)).To(BeTrue(), "want *Error, got %T %v", err, err)
				want := tc.readKind
				if o.mutating {
					want = tc.mutatingKind
				}
				g.Expect(e.Kind).To(Equal(want), err.Error())
				g.Expect(e.Op).To(Equal(o.name))
				g.Expect(e.HTTPStatus).To(Equal(tc.status))
				g.Expect(e.Codes).To(Equal(tc.codes))
				g.Expect(e.RayID).To(Equal(tc.ray))
				g.Expect(e.Message).To(ContainSubstring(tc.message))
				if tc.ray != "" {
					g.Expect(err.Error()).To(ContainSubstring(tc.ray))
				}
				g.Expect(e.RetryAfter).To(Equal(tc.retryAfter))
				g.Expect(RetryAfterOf(err)).To(Equal(tc.retryAfter))
				g.Expect(err.Error()).NotTo(ContainSubstring(testAPIToken))
				if tc.refused {
					g.Expect(hits.Load()).To(BeZero())
					return
				}
				// The SDK must never retry: not on 429, 5xx, a reset or a timeout.
				g.Expect(hits.Load()).To(Equal(int32(1)))
				g.Expect(gotRoute.Load()).To(Equal(o.method + " " + o.path))
			})
		}
	}
}

func TestTimeoutKeepsDeadlineCause(t *testing.T) {
	g := NewWithT(t)
	srv := httptest.NewServer(http.HandlerFunc(stall))
	defer srv.Close()
	c, _ := newTestClient(t, srv.URL, FactoryOptions{RequestTimeout: 200 * time.Millisecond})
	_, err := c.Create(context.Background(), Scope{AccountID: testAccount}, TokenSpec{Name: "n"})
	g.Expect(KindOf(err)).To(Equal(KindOutcomeUnknown))
	g.Expect(errors.Is(err, context.DeadlineExceeded)).To(BeTrue(), err.Error())
}

func TestSDKNeverSleepsOnRetryAfter(t *testing.T) {
	for _, o := range allOps {
		t.Run(o.name, func(t *testing.T) {
			g := NewWithT(t)
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				reply(429, "application/json", failure(971, "rate limited"), "Retry-After", "600")(w, r)
			}))
			defer srv.Close()
			c, _ := newTestClient(t, srv.URL, FactoryOptions{})
			// Backstop only: an SDK retry would sleep 600s and hit this deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()

			err := o.call(ctx, c)

			g.Expect(hits.Load()).To(Equal(int32(1)), "exactly one request reached the server")
			g.Expect(KindOf(err)).To(Equal(KindRateLimited), fmt.Sprint(err))
			g.Expect(RetryAfterOf(err)).To(Equal(600 * time.Second))
			g.Expect(time.Since(start)).To(BeNumerically("<", 3*time.Second))
		})
	}
}

// A 429 pauses the whole account: the next caller (another operation, as
// another worker would send) is refused without reaching the server.
func TestServer429PausesAccount(t *testing.T) {
	g := NewWithT(t)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			reply(429, "application/json", failure(971, "rate limited"), "Retry-After", "30")(w, r)
			return
		}
		reply(200, "application/json", `{"success":true,"errors":[],"messages":[],"result":{"id":"`+testTokenID+`","name":"n"}}`)(w, r)
	}))
	defer srv.Close()
	c, clk := newTestClient(t, srv.URL, FactoryOptions{})
	ctx := context.Background()

	_, err := c.Get(ctx, Scope{AccountID: testAccount}, testTokenID)
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))

	clk.Step(10 * time.Second)
	_, err = c.Create(ctx, Scope{AccountID: testAccount}, TokenSpec{Name: "other"})
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	g.Expect(RetryAfterOf(err)).To(Equal(20 * time.Second))
	g.Expect(err.(*Error).Op).To(Equal("create"))
	g.Expect(err.(*Error).HTTPStatus).To(BeZero(), "refused locally")
	g.Expect(hits.Load()).To(Equal(int32(1)), "the paused caller never reached the server")
	g.Expect(c.limiter.Delay()).To(Equal(20 * time.Second))

	clk.Step(20 * time.Second)
	_, err = c.Get(ctx, Scope{AccountID: testAccount}, testTokenID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(hits.Load()).To(Equal(int32(2)))
}

func TestNoCallWithoutAccountOrWithUnsafeIDs(t *testing.T) {
	g := NewWithT(t)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	c, _ := newTestClient(t, srv.URL, FactoryOptions{})
	ctx := context.Background()

	_, err := c.Refresh(ctx, "", testTokenID) // zone tokens have no account to refresh in
	g.Expect(KindOf(err)).To(Equal(KindInvalid))
	g.Expect(err.Error()).To(ContainSubstring("account-scoped"))
	_, err = c.Rotate(ctx, "", testTokenID, time.Time{})
	g.Expect(KindOf(err)).To(Equal(KindInvalid))
	_, err = c.Get(ctx, Scope{AccountID: testAccount}, "../../zones/x")
	g.Expect(KindOf(err)).To(Equal(KindInvalid))
	err = c.Delete(ctx, Scope{AccountID: testAccount}, "a?b=c")
	g.Expect(KindOf(err)).To(Equal(KindInvalid))
	_, err = c.List(ctx, Scope{}, ListOptions{})
	g.Expect(KindOf(err)).To(Equal(KindInvalid))
	g.Expect(hits.Load()).To(BeZero())
}
