package cloudflare

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
)

const (
	// maxBody bounds what we buffer from one response (a full 1000-token
	// page is a few hundred KiB).
	maxBody = 32 << 20
	// defaultRetryAfter is used when a 429 carries no usable Retry-After;
	// maxRetryAfter caps a hostile or broken one so an account is never
	// paused for days.
	defaultRetryAfter = 60 * time.Second
	maxRetryAfter     = time.Hour
)

// exchange records what actually went over the wire for one SDK call. The SDK
// turns a non-JSON error body into a bare decode error and keeps the request
// (with its Authorization header) in *apierror.Error, so we classify from
// this record and never from the SDK's error value.
type exchange struct {
	sent   bool // the SDK reached the transport (false: it failed before any I/O)
	status int  // 0 when no response arrived
	header http.Header
	body   []byte
}

// middleware is installed per call with option.WithMiddleware.
func (x *exchange) middleware(req *http.Request, next func(*http.Request) (*http.Response, error)) (*http.Response, error) {
	x.sent = true
	res, err := next(req)
	if err != nil {
		return nil, err
	}
	x.status, x.header = res.StatusCode, res.Header
	body, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	_ = res.Body.Close()
	if err != nil {
		return nil, err
	}
	x.body = body
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res, nil
}

// ok reports whether the call succeeded at the HTTP level.
func (x *exchange) ok() bool { return x.status >= 200 && x.status < 300 }

// mutating ops are those where a lost response leaves the outcome unknown:
// create and rotate may have minted a secret nobody saw, delete may be done.
func mutating(op string) bool { return op == "create" || op == "rotate" || op == "delete" }

// classify turns a failed call into *Error. err is the SDK's error (nil when
// the SDK was happy but the response was not usable).
func (c *client) classify(op string, x *exchange, err error) *Error {
	e := &Error{Op: op, HTTPStatus: x.status}
	red := c.redactorFor(x.body)
	if x.header != nil {
		// Headers are server input like the body: scrub them the same way.
		e.RayID = red.apply(x.header.Get("CF-Ray"))
	}
	e.Codes, e.Message = envelopeErrors(x.body, red)

	switch {
	case !x.sent:
		// Nothing left the process (bad input or option): never a retryable
		// or unknown outcome.
		e.Kind, e.Err = KindInvalid, sanitize(err, red)
	case x.status == http.StatusTooManyRequests:
		e.Kind, e.RetryAfter = KindRateLimited, retryAfter(x.header, c.clock.Now())
		c.limiter.Pause(e.RetryAfter)
		c.metrics.rateLimited("server")
	case x.status >= 400 && x.status < 500 && hasCode(e.Codes, codeNoRoute, codeCouldNotRoute):
		// Checked before 404: an unknown account or zone is not a missing
		// token, and taking it for one would drop a finalizer while the
		// real token lives on.
		e.Kind = KindUnreachable
	case x.status >= 400 && x.status < 500 && hasCode(e.Codes, codeInvalidHeaders):
		// Malformed credentials; the error_chain (in Message) says which.
		e.Kind = KindAuth
	case x.status == http.StatusNotFound:
		e.Kind = KindNotFound
	case x.status == http.StatusUnauthorized, x.status == http.StatusForbidden:
		e.Kind = KindAuth
	case x.status == http.StatusRequestTimeout, x.status == http.StatusConflict:
		// The request was not applied (the SDK retries these too).
		e.Kind = KindTransient
		if e.Message == "" {
			e.Message = http.StatusText(x.status)
		}
	case x.status >= 500:
		e.Kind = lostKind(op)
		if e.Message == "" {
			e.Message = http.StatusText(x.status)
		}
	case x.status != 0 && !x.ok():
		// Other 4xx, and statuses the API never sends (1xx/3xx: a wrong base
		// URL), are terminal until the spec or the configuration changes.
		e.Kind = KindInvalid
		if e.Message == "" {
			e.Message = "unexpected HTTP status " + strconv.Itoa(x.status)
		}
	case x.status != 0:
		// 2xx whose body we could not use (HTML, cut off, no result): the
		// request did happen, we just cannot see what it did.
		e.Kind = lostKind(op)
		if e.Message == "" {
			e.Message = "malformed response body"
		}
		e.Err = sanitize(err, red)
	default:
		// No response: connection refused, reset, timeout, cancellation.
		e.Kind = lostKind(op)
		if notSent(err) {
			e.Kind = KindTransient
		}
		e.Err = sanitize(err, red)
	}
	return e
}

// lostKind is the kind of a call whose effect cannot be observed.
func lostKind(op string) ErrorKind {
	if mutating(op) {
		return KindOutcomeUnknown
	}
	return KindTransient
}

// notSent reports errors that prove the request never reached the server
// (the dial or the name lookup failed), so even a create is safe to retry.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// Cloudflare error codes the classification keys on (API-NOTES.md).
const (
	codeNoRoute        = 7000 // "No route for that URI"
	codeCouldNotRoute  = 7003 // "Could not route to …": unknown account or zone
	codeInvalidHeaders = 6003 // "Invalid request headers": malformed credentials
)

func hasCode(codes []int, want ...int) bool {
	for _, c := range codes {
		for _, w := range want {
			if c == w {
				return true
			}
		}
	}
	return false
}

// envelopeErrors reads Cloudflare's {errors:[{code,message,error_chain}]}
// envelope, if the body is JSON at all. The error_chain holds the useful
// detail of a 6003 ("Invalid format for Authorization header"): its codes
// follow the top-level ones and its messages go in brackets.
func envelopeErrors(body []byte, red redactor) ([]int, string) {
	if len(body) == 0 || !gjson.ValidBytes(body) {
		return nil, ""
	}
	var codes []int
	var msgs []string
	for _, item := range gjson.GetBytes(body, "errors").Array() {
		if code := item.Get("code"); code.Exists() {
			codes = append(codes, int(code.Int()))
		}
		m := strings.TrimSpace(item.Get("message").String())
		var chain []string
		for _, link := range item.Get("error_chain").Array() {
			if code := link.Get("code"); code.Exists() {
				codes = append(codes, int(code.Int()))
			}
			if lm := strings.TrimSpace(link.Get("message").String()); lm != "" {
				chain = append(chain, lm)
			}
		}
		if len(chain) > 0 {
			m = strings.TrimSpace(m + " (" + strings.Join(chain, "; ") + ")")
		}
		if m != "" {
			msgs = append(msgs, red.apply(m))
		}
	}
	return codes, strings.Join(msgs, "; ")
}

// retryAfter parses Retry-After as seconds or an HTTP date.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		d = time.Duration(secs * float64(time.Second))
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return defaultRetryAfter
	}
	return min(max(d, time.Second), maxRetryAfter)
}

// redactor removes secrets from anything that ends up in an error string.
type redactor struct{ secrets []string }

// secretShape matches Cloudflare client secrets (new cfast_ and legacy
// 64-hex forms) even when we do not know their value.
var secretShape = regexp.MustCompile(`cfast_[A-Za-z0-9_]+|\b[0-9a-fA-F]{64}\b`)

func (c *client) redactorFor(body []byte) redactor {
	r := redactor{secrets: c.credentials}
	if s := gjson.GetBytes(body, "result.client_secret").String(); s != "" {
		r.secrets = append(r.secrets[:len(r.secrets):len(r.secrets)], s)
	}
	return r
}

func (r redactor) apply(s string) string {
	for _, secret := range r.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "<redacted>")
		}
	}
	return secretShape.ReplaceAllString(s, "<redacted>")
}

// sanitize keeps err as the cause when its text carries no secret, so callers
// can still errors.Is it (context.DeadlineExceeded, ...); otherwise only the
// redacted text survives.
func sanitize(err error, red redactor) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if clean := red.apply(msg); clean != msg {
		return errors.New(clean)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("request timed out: %w", err)
	}
	return err
}
