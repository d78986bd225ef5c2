package cloudflare

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzResponseDecoding serves an arbitrary status, Content-Type, Retry-After
// and body to every Client operation and checks that decoding never panics,
// that every failure is a classified *Error, that a success is a usable
// token, and that neither the API token nor a client secret in the body ever
// reaches an error string.
func FuzzResponseDecoding(f *testing.F) {
	const secret = "cfast_FuzzSecretValue0123456789abcdefghijABCD0badf00d"
	tok := `{"id":"f174e90a-fafe-4643-bbbc-4a0ed4fc8415","client_id":"abc.access","name":"n","duration":"8760h",` +
		`"expires_at":"2027-01-01T00:00:00Z","created_at":"2026-01-01T00:00:00Z","client_secret":"` + secret + `"}`
	f.Add(200, "application/json", "", `{"success":true,"errors":[],"messages":[],"result":`+tok+`}`)
	f.Add(201, "application/json", "", `{"success":true,"errors":[],"messages":[],"result":`+tok+`}`)
	f.Add(200, "application/json", "", `{"success":true,"result":[`+tok+`,`+tok+`],"result_info":{"page":1,"per_page":1000,"total_pages":1,"count":2}}`)
	f.Add(502, "text/html", "", "<html><body><h1>502 Bad Gateway</h1></body></html>")
	f.Add(429, "application/json", "7", `{"success":false,"errors":[{"code":10429,"message":"rate limited"}],"result":null}`)
	f.Add(429, "application/json", "Wed, 21 Oct 2015 07:28:00 GMT", `{}`)
	f.Add(400, "application/json", "", `{"success":false,"errors":[{"code":10400,"message":"bad `+secret+` `+testAPIToken+`"}]}`)
	f.Add(200, "application/json", "", `{"success":true,"result":{"client_secret":"`+secret+`","id":5}}`)
	f.Add(200, "application/json", "", `{"success":true,"result":null}`)
	f.Add(404, "", "", ``)
	f.Add(200, "application/json", "1e309", `{"result":{"id":"x","expires_at":12,"enabled":"yes"}}`)
	f.Add(200, "application/json", "", `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`)
	f.Fuzz(func(t *testing.T, status int, contentType, retry, body string) {
		if status < 200 || status > 599 { // 1xx are informational, never a final answer
			status = 200 + (abs(status) % 400)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			// Header values net/http would refuse to send are not a response
			// a server can produce: they would only time the call out.
			if contentType != "" && !hasControl(contentType) {
				w.Header()["Content-Type"] = []string{contentType}
			}
			if retry != "" && !hasControl(retry) {
				w.Header()["Retry-After"] = []string{retry}
			}
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}))
		defer srv.Close()
		// MaxWait: a 429 pauses the account; later calls are refused at once, not waited for.
		c, _ := newTestClient(t, srv.URL, FactoryOptions{RequestTimeout: 2 * time.Second, MaxWait: time.Millisecond})
		for _, o := range allOps {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := o.call(ctx, c)
			cancel()
			if err == nil {
				continue
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: error is not *Error: %T", o.name, err)
			}
			if e.Kind == "" {
				t.Fatalf("%s: unclassified error", o.name)
			}
			msg := err.Error()
			if strings.Contains(msg, testAPIToken) || strings.Contains(msg, secret) {
				t.Fatalf("%s: error text leaks a credential", o.name)
			}
			if s := jsonSecret(body); len(s) >= 8 && strings.Contains(msg, s) {
				t.Fatalf("%s: error text leaks the response's client_secret", o.name)
			}
			if e.Kind == KindRateLimited && (e.RetryAfter < 0 || e.RetryAfter > maxRetryAfter) {
				t.Fatalf("%s: retry after %v out of bounds", o.name, e.RetryAfter)
			}
		}
	})
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r > 0x7e })
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// jsonSecret is the result.client_secret of body, if any (decoded as the client does).
func jsonSecret(body string) string {
	c := &client{}
	r := c.redactorFor([]byte(body))
	if len(r.secrets) == 0 {
		return ""
	}
	return r.secrets[len(r.secrets)-1]
}
