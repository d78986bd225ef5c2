package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzHandler feeds arbitrary requests to the handler: it must never panic,
// and every answer outside /_sim must be a well-formed envelope whose
// success flag agrees with the status, that carries a secret only when
// create or rotate succeeded. "{id}" in a path becomes a real token's ID so
// that the fuzzer reaches the handlers.
//
//	go test ./internal/cloudflare/sim -run '^$' -fuzz FuzzHandler -fuzztime 30s
func FuzzHandler(f *testing.F) {
	for _, seed := range []struct {
		method, path, body string
		auth               uint8
	}{
		{"POST", acct, `{"name":"a"}`, 1},
		{"POST", zone, `{"name":"z","duration":"forever","enabled":false}`, 1},
		{"POST", acct, `{"name":"a","duration":"-1h"}`, 1},
		{"POST", acct, `{"name":`, 1},
		{"POST", acct, `[1,2]`, 1},
		{"POST", acct, `{"name":"a","client_secret_version":1e300}`, 1},
		{"GET", acct + "?page=2&per_page=1&name=a&search=A", "", 1},
		{"GET", acct + "?per_page=99999", "", 2},
		{"GET", zone + "?page=x", "", 1},
		{"GET", acct + "/{id}", "", 2},
		{"PUT", acct + "/{id}", `{"duration":"1h","client_secret_version":3,"previous_client_secret_expires_at":"2030-01-01T00:00:00Z"}`, 1},
		{"PUT", acct + "/{id}", `{"previous_client_secret_expires_at":"yesterday"}`, 1},
		{"DELETE", acct + "/{id}", "", 3},
		{"POST", acct + "/{id}/rotate", `{"previous_client_secret_expires_at":"2030-01-01T00:00:00Z"}`, 1},
		{"POST", acct + "/{id}/refresh", "", 1},
		{"POST", zone + "/{id}/refresh", "", 1},
		{"PATCH", acct + "/{id}", "{}", 1},
		{"GET", "/client/v4/accounts//access/service_tokens", "", 1},
		{"GET", "/client/v4/accounts/acc1/access/service_tokens/../../../../", "", 1},
		{"GET", "/", "", 0},
		{"GET", "/_sim/tokens", "", 0},
		{"PUT", "/_sim/faults", `{"rate":1,"kinds":["reset"]}`, 0},
		{"", "/client/v4", "", 0},
	} {
		f.Add(seed.method, seed.path, seed.body, seed.auth)
	}

	s := New(Options{
		Accounts:        []string{"acc1"},
		Zones:           []string{"zone1"},
		APITokens:       []APIToken{{Token: writerToken}, {Token: readerToken, ReadOnly: true}},
		APIKeys:         []APIKey{{Email: keyEmail, Key: globalKey}},
		RateLimit:       RateLimit{Requests: -1},
		Seed:            1,
		RequestLogLimit: 100,
	})

	f.Fuzz(func(t *testing.T, method, path, body string, authMode uint8) {
		// A fuzzed PUT /_sim/faults must not leak into the next input.
		s.SetFaults(Faults{})
		ids := s.Tokens()
		if len(ids) == 0 {
			s.create(route{op: OpCreate, scopeID: "acc1"}, []byte(`{"name":"fuzz"}`))
			ids = s.Tokens()
		}
		path = strings.ReplaceAll(path, "{id}", ids[0].ID)
		p, query, _ := strings.Cut(path, "?")
		req := &http.Request{
			Method:     method,
			URL:        &url.URL{Path: p, RawQuery: query},
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     http.Header{},
			Body:       io.NopCloser(strings.NewReader(body)),
			Host:       "sim",
			RemoteAddr: "192.0.2.1:1234",
			RequestURI: path,
		}
		switch authMode % 4 {
		case 1:
			req.Header.Set("Authorization", "Bearer "+writerToken)
		case 2:
			req.Header.Set("Authorization", "Bearer "+readerToken)
		case 3:
			req.Header.Set("X-Auth-Email", keyEmail)
			req.Header.Set("X-Auth-Key", globalKey)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)

		if p == "/_sim" || strings.HasPrefix(p, "/_sim/") {
			return
		}
		checkEnvelope(t, method, p, rec)
	})
}

func checkEnvelope(t *testing.T, method, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	status, raw := rec.Code, rec.Body.Bytes()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %q: content type %q", method, path, ct)
	}
	switch status {
	case 200, 201, 400, 401, 403, 404, 405, 429:
	default:
		t.Fatalf("%s %q: unexpected status %d", method, path, status)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatalf("%s %q: body is not a JSON object: %s", method, path, raw)
	}
	for _, k := range []string{"success", "errors", "messages", "result"} {
		if _, ok := keys[k]; !ok {
			t.Fatalf("%s %q: envelope lacks %q: %s", method, path, k, raw)
		}
	}
	var env struct {
		Success bool       `json:"success"`
		Errors  []apiError `json:"errors"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%s %q: %v: %s", method, path, err, raw)
	}
	result := string(keys["result"])
	if env.Success != (status < 300) {
		t.Fatalf("%s %q: success %v with status %d", method, path, env.Success, status)
	}
	if env.Success {
		if len(env.Errors) != 0 || result == "null" {
			t.Fatalf("%s %q: success with errors or no result: %s", method, path, raw)
		}
	} else {
		if len(env.Errors) == 0 || result != "null" {
			t.Fatalf("%s %q: failure without errors or with a result: %s", method, path, raw)
		}
		for _, e := range env.Errors {
			if e.Code < 1000 || e.Message == "" {
				t.Fatalf("%s %q: bad error entry %+v", method, path, e)
			}
		}
	}
	secretAllowed := status == 201 || (status == 200 && strings.HasSuffix(path, "/rotate"))
	if strings.Contains(string(raw), `"client_secret"`) && !secretAllowed {
		t.Fatalf("%s %q: a secret in a %d response: %s", method, path, status, raw)
	}
}
