// Package contract checks HTTP traffic against Cloudflare's published OpenAPI
// schema for the Access service-token endpoints
// (service-tokens.openapi.json), so that the simulator, and any client
// talking to it, cannot drift from the real API unnoticed.
//
// Typical use in a test:
//
//	v := contract.Load(t)
//	srv := httptest.NewServer(v.Wrap(sim.New(opts)))
//	defer srv.Close()
//	... exercise srv.URL ...
//	v.AssertClean(t)
//
// Wrap validates every request under /client/v4 (route, parameters, body)
// and every response (status, content type, body) and records violations;
// it never changes the traffic. Other paths (the simulator's /_sim control
// endpoints) pass through unchecked. Authentication is not validated: the
// schema's security requirements are odd (account paths require email, key
// and token at once; zone paths list no token) and the simulator tests
// authentication itself.
//
// Responses are held to a closed reading of the schema: an object may carry
// only the properties the schema documents for it (allOf branches merged),
// so an expires_at in a create response, or an unknown field in result_info
// or the envelope, is a violation. The one exception is error_chain (an
// array of {code, message}) in the errors[] items of a 4xx response, which
// Cloudflare sends with code 6003 though the schema does not list it.
// Requests are validated as the schema is written (open).
//
// Exemptions: a 5xx response with a non-JSON body is not validated, because
// Cloudflare's edge answers that way (the simulator's Fault5xx imitates it)
// and the schema does not describe 5xx; Exempted counts them. A response that
// never came (hijacked connection: reset and drop-response faults) is not
// validated either. Any other status the schema does not declare (405, a JSON
// 500, …) is a violation.
package contract

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// EnvSpec names the environment variable that overrides the schema's path.
const EnvSpec = "CF_OPENAPI_SPEC"

// BasePath is where the schema's paths live on the wire.
const BasePath = "/client/v4"

const modulePath = "github.com/servicetoken-operator/servicetoken-operator"

// maxBody caps how much of a request or response body is buffered for
// validation.
const maxBody = 8 << 20

// Stage says which check a violation failed.
type Stage string

const (
	// StageRoute: the request matches no operation of the schema (unknown
	// path or method).
	StageRoute Stage = "route"
	// StageRequest: parameters or body do not match the operation.
	StageRequest Stage = "request"
	// StageResponse: status, content type or body do not match.
	StageResponse Stage = "response"
)

// Violation is one failed check.
type Violation struct {
	Stage  Stage
	Method string
	Path   string // path and query, as requested
	Status int    // response status; 0 for route and request violations
	Err    string
}

func (v Violation) String() string {
	if v.Stage == StageResponse {
		return fmt.Sprintf("%s %s %s -> %d: %s", v.Stage, v.Method, v.Path, v.Status, v.Err)
	}
	return fmt.Sprintf("%s %s %s: %s", v.Stage, v.Method, v.Path, v.Err)
}

// Validator validates traffic against the schema. It is safe for concurrent
// use.
type Validator struct {
	router routers.Router
	opts   *openapi3filter.Options

	mu         sync.Mutex
	violations []Violation
	exempted   int
}

// SpecPath returns where the schema is expected: $CF_OPENAPI_SPEC, else
// <repo root>/../shared/cloudflare/service-tokens.openapi.json, the repo root
// being the nearest directory upwards (from the working directory, then from
// this source file) whose go.mod declares this module.
func SpecPath() (string, error) {
	if p := os.Getenv(EnvSpec); p != "" {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(root), "shared", "cloudflare", "service-tokens.openapi.json"), nil
}

func repoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for {
			if declaresModule(filepath.Join(dir, "go.mod")) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("no go.mod of module %s above the working directory; set %s", modulePath, EnvSpec)
}

func declaresModule(gomod string) bool {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == modulePath
		}
	}
	return false
}

// LoadFile builds a Validator from the schema at path.
func LoadFile(path string) (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	// A relative server makes the router strip /client/v4 whatever host and
	// port the test server has.
	doc.Servers = openapi3.Servers{{URL: BasePath}}
	closeResponses(doc)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing %s: %w", path, err)
	}
	return &Validator{
		router: router,
		opts: &openapi3filter.Options{
			AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
			IncludeResponseStatus: true,
			MultiError:            true,
			SkipSettingDefaults:   true,
		},
	}, nil
}

// Load finds and loads the schema for a test. A missing schema file fails
// the test when CI=true and skips it otherwise; a schema that is present but
// broken always fails. It returns nil only if tb's Skipf/Fatalf return.
func Load(tb testing.TB) *Validator {
	tb.Helper()
	path, err := SpecPath()
	if err == nil {
		_, err = os.Stat(path)
	}
	if err != nil {
		msg := fmt.Sprintf("Cloudflare OpenAPI schema not available (%v); put service-tokens.openapi.json at ../shared/cloudflare beside the repo or set %s", err, EnvSpec)
		if errors.Is(err, fs.ErrNotExist) && os.Getenv("CI") != "true" {
			tb.Skipf("%s", msg)
		} else {
			tb.Fatalf("%s", msg)
		}
		return nil
	}
	v, err := LoadFile(path)
	if err != nil {
		tb.Fatalf("contract: %v", err)
		return nil
	}
	return v
}

// Wrap returns next with every /client/v4 request and response validated.
func (v *Validator) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != BasePath && !strings.HasPrefix(r.URL.Path, BasePath+"/") {
			next.ServeHTTP(w, r)
			return
		}
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(r.Body, maxBody))
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		in, err := v.checkRequest(r, body)
		if err != nil {
			v.add(err)
		}
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if in == nil || rec.hijacked {
			return
		}
		if !rec.wroteHeader {
			rec.header = w.Header().Clone()
		}
		if err := v.checkResponse(in, rec.status, rec.header, rec.body.Bytes()); err != nil {
			v.add(err)
		}
	})
}

// ValidateExchange checks one request and its response outside a server,
// e.g. from a RoundTripper or on a recorded exchange, and records any
// violation like Wrap does. reqBody is the request body (r.Body is ignored).
func (v *Validator) ValidateExchange(r *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	in, err := v.checkRequest(r, reqBody)
	if err != nil {
		v.add(err)
	}
	if in == nil {
		return
	}
	if err := v.checkResponse(in, status, header, respBody); err != nil {
		v.add(err)
	}
}

// checkRequest returns the validation input for the response check (nil when
// the request matches no operation) and the request's violation, if any.
func (v *Validator) checkRequest(r *http.Request, body []byte) (*openapi3filter.RequestValidationInput, *Violation) {
	where := Violation{Method: r.Method, Path: r.URL.RequestURI()}
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		where.Stage, where.Err = StageRoute, err.Error()
		return nil, &where
	}
	// Validate a copy so the handler still reads the original body.
	vr := r.Clone(context.WithoutCancel(r.Context()))
	vr.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route, Options: v.opts}
	if err := openapi3filter.ValidateRequest(vr.Context(), in); err != nil {
		where.Stage, where.Err = StageRequest, oneLine(err)
		return in, &where
	}
	return in, nil
}

func (v *Validator) checkResponse(in *openapi3filter.RequestValidationInput, status int, header http.Header, body []byte) *Violation {
	if status >= 500 && !isJSON(header.Get("Content-Type")) {
		v.mu.Lock()
		v.exempted++
		v.mu.Unlock()
		return nil
	}
	err := openapi3filter.ValidateResponse(in.Request.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                v.opts,
	})
	if err == nil {
		return nil
	}
	return &Violation{Stage: StageResponse, Method: in.Request.Method, Path: in.Request.URL.RequestURI(), Status: status, Err: oneLine(err)}
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func (v *Validator) add(viol *Violation) {
	v.mu.Lock()
	v.violations = append(v.violations, *viol)
	v.mu.Unlock()
}

// All returns every violation recorded so far.
func (v *Validator) All() []Violation {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Violation(nil), v.violations...)
}

func (v *Validator) strings(keep func(Stage) bool) []string {
	var out []string
	for _, viol := range v.All() {
		if keep(viol.Stage) {
			out = append(out, viol.String())
		}
	}
	return out
}

// Violations returns every violation as a readable line.
func (v *Validator) Violations() []string {
	return v.strings(func(Stage) bool { return true })
}

// RequestViolations returns route and request violations only: what a test
// that sends invalid requests on purpose expects to see.
func (v *Validator) RequestViolations() []string {
	return v.strings(func(s Stage) bool { return s != StageResponse })
}

// ResponseViolations returns response violations only.
func (v *Validator) ResponseViolations() []string {
	return v.strings(func(s Stage) bool { return s == StageResponse })
}

// Exempted counts responses not validated because they were non-JSON 5xx.
func (v *Validator) Exempted() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.exempted
}

// Reset forgets every violation and exemption.
func (v *Validator) Reset() {
	v.mu.Lock()
	v.violations, v.exempted = nil, 0
	v.mu.Unlock()
}

// AssertClean fails the test, listing them, if any violation was recorded.
func (v *Validator) AssertClean(tb testing.TB) {
	tb.Helper()
	if vs := v.Violations(); len(vs) > 0 {
		tb.Errorf("%d OpenAPI contract violation(s):\n  %s", len(vs), strings.Join(vs, "\n  "))
	}
}

// AssertResponsesClean fails the test if any response violated the schema;
// for tests that send invalid requests on purpose.
func (v *Validator) AssertResponsesClean(tb testing.TB) {
	tb.Helper()
	if vs := v.ResponseViolations(); len(vs) > 0 {
		tb.Errorf("%d OpenAPI response violation(s):\n  %s", len(vs), strings.Join(vs, "\n  "))
	}
}

// recorder passes a response through while keeping a copy of it. It
// forwards Hijack and Flush so faults that cut the connection still work
// behind the validator.
type recorder struct {
	http.ResponseWriter
	status      int
	header      http.Header
	wroteHeader bool
	hijacked    bool
	body        bytes.Buffer
}

func (r *recorder) WriteHeader(status int) {
	if r.wroteHeader {
		return
	}
	r.wroteHeader = true
	r.status = status
	r.header = r.ResponseWriter.Header().Clone()
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	if r.body.Len() < maxBody {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return conn, rw, err
}

func (r *recorder) Flush() {
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
