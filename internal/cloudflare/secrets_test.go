package cloudflare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// Distinctive values that must never show up in an error or a log.
const (
	leakAPIToken = "APITOKEN-leak-canary-Zq9xW2"
	leakAPIKey   = "legacykey-leak-canary-77aa"
	// A new-style client secret, a legacy 64-hex one, and one of no known
	// shape (which only ever appears where Cloudflare puts secrets).
	leakSecret       = "cfast_LeakCanaryQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ0badc0de"
	leakLegacySecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	leakOddSecret    = "odd-shaped-secret-Kx7!"
)

// leakyHandlers fail in every way we can think of, and put the credentials
// of the request and freshly minted secrets into everything they send.
func leakyHandlers() map[string]http.HandlerFunc {
	echo := func(r *http.Request) string {
		return r.Header.Get("Authorization") + " " + r.Header.Get("X-Auth-Key") + " " + leakSecret + " " + leakLegacySecret
	}
	jsonFail := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("CF-Ray", echo(r))
			w.Header().Set("Retry-After", "5")
			reply(status, "application/json", failure(1000, "echo: "+echo(r)))(w, r)
		}
	}
	minted := `{"id":"","client_id":"c.access","client_secret":"` + leakOddSecret + `","name":"n"}`
	return map[string]http.HandlerFunc{
		"400 echo": jsonFail(400),
		"401 echo": jsonFail(401),
		"403 echo": jsonFail(403),
		"404 echo": jsonFail(404),
		"429 echo": jsonFail(429),
		"500 echo": jsonFail(500),
		"502 html": func(w http.ResponseWriter, r *http.Request) {
			reply(502, "text/html", "<html>"+echo(r)+"</html>")(w, r)
		},
		"2xx secret without id": func(w http.ResponseWriter, r *http.Request) {
			reply(201, "application/json", success(minted))(w, r)
		},
		"2xx secret in html": func(w http.ResponseWriter, r *http.Request) {
			reply(201, "text/html", "<p>"+minted+" "+echo(r)+"</p>")(w, r)
		},
		"2xx success false": func(w http.ResponseWriter, r *http.Request) {
			reply(200, "application/json", `{"success":false,"errors":[{"code":1,"message":"`+echo(r)+`"}],"messages":[],"result":`+minted+`}`)(w, r)
		},
		"2xx wrong types": func(w http.ResponseWriter, r *http.Request) {
			reply(201, "application/json", `{"success":true,"errors":[],"messages":[],"result":{"id":{"x":"`+leakOddSecret+`"},"client_secret":["`+leakOddSecret+`"]}}`)(w, r)
		},
		"2xx truncated": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "100000")
			w.WriteHeader(201)
			_, _ = w.Write([]byte(`{"success":true,"result":{"client_secret":"` + leakOddSecret + `","id":"x`))
			w.(http.Flusher).Flush()
			hangUp(w, r)
		},
		"reset":   hangUp,
		"timeout": stall,
	}
}

func TestErrorsNeverContainSecrets(t *testing.T) {
	var logs bytes.Buffer
	log.SetOutput(&logs)
	defer log.SetOutput(nil)
	defer log.SetOutput(log.Writer())

	secrets := []string{leakAPIToken, leakAPIKey, leakSecret, leakLegacySecret, leakOddSecret}
	for name, handler := range leakyHandlers() {
		for _, o := range allOps {
			for _, legacy := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/legacy=%v", name, o.name, legacy), func(t *testing.T) {
					g := NewWithT(t)
					srv := httptest.NewServer(handler)
					defer srv.Close()
					cfg := AccountConfig{Key: "k", BaseURL: srv.URL + "/client/v4", APIToken: leakAPIToken}
					if legacy {
						cfg = AccountConfig{Key: "k", BaseURL: srv.URL + "/client/v4", APIKey: leakAPIKey, Email: "ops@example.com"}
					}
					timeout := 10 * time.Second
					if name == "timeout" {
						timeout = 100 * time.Millisecond
					}
					c, err := NewFactory(FactoryOptions{RequestTimeout: timeout}).ClientFor(cfg)
					g.Expect(err).NotTo(HaveOccurred())

					err = o.call(context.Background(), c)
					if err == nil {
						return // e.g. delete ignores the result body: nothing to leak
					}
					t.Log(err)
					g.Expect(KindOf(err)).NotTo(BeEmpty())
					var texts []string
					for e := err; e != nil; e = errors.Unwrap(e) {
						texts = append(texts, e.Error(), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
					}
					var ce *Error
					g.Expect(errors.As(err, &ce)).To(BeTrue())
					texts = append(texts, ce.Message, ce.RayID)
					for _, text := range texts {
						for _, s := range secrets {
							g.Expect(text).NotTo(ContainSubstring(s))
						}
					}
				})
			}
		}
	}
	for _, s := range []string{leakAPIToken, leakAPIKey, leakSecret, leakLegacySecret, leakOddSecret} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("log output contains a secret")
		}
	}
}
