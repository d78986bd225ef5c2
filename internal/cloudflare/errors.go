package cloudflare

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrorKind classifies a failed call by what the caller should do next.
type ErrorKind string

const (
	// KindNotFound: the token does not exist (HTTP 404 that is not a routing
	// error). Only this kind proves a token is gone.
	KindNotFound ErrorKind = "NotFound"
	// KindUnreachable: Cloudflare could not route the path (codes 7003/7000):
	// the account or zone does not exist or these credentials cannot reach
	// it. It says nothing about the token. Terminal until the account, zone
	// or credentials change.
	KindUnreachable ErrorKind = "Unreachable"
	// KindAuth: bad, malformed or under-privileged credentials (401/403, and
	// 400 with code 6003 "Invalid request headers"). Terminal until the
	// credentials change.
	KindAuth ErrorKind = "Unauthorized"
	// KindInvalid: Cloudflare rejected the request (400/422 and other 4xx).
	// Terminal until the spec changes.
	KindInvalid ErrorKind = "InvalidRequest"
	// KindRateLimited: 429 from Cloudflare, or the client-side budget is spent.
	// Wait RetryAfter, then try again.
	KindRateLimited ErrorKind = "RateLimited"
	// KindTransient: 5xx, 408, 409, timeouts, connection errors on reads and
	// idempotent writes, and lists that look incomplete. Retry with backoff.
	KindTransient ErrorKind = "Transient"
	// KindOutcomeUnknown: a create, rotate or delete whose response was lost;
	// the change may have happened. Observe before acting again.
	KindOutcomeUnknown ErrorKind = "OutcomeUnknown"
)

// Error is every error the Client returns. It keeps what an operator on call
// needs (status, Cloudflare codes, CF-Ray) and never a secret or API token.
type Error struct {
	Kind       ErrorKind
	Op         string // list, get, create, update, delete, refresh, rotate
	HTTPStatus int    // 0 when no response arrived
	Codes      []int
	Message    string // Cloudflare's error messages, joined
	RayID      string
	RetryAfter time.Duration // for KindRateLimited
	Err        error         // underlying cause, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cloudflare %s: %s", e.Op, e.Kind)
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, " (HTTP %d", e.HTTPStatus)
		if len(e.Codes) > 0 {
			fmt.Fprintf(&b, ", codes %v", e.Codes)
		}
		if e.RayID != "" {
			fmt.Fprintf(&b, ", cf-ray %s", e.RayID)
		}
		b.WriteString(")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Kind == KindRateLimited && e.RetryAfter > 0 {
		fmt.Fprintf(&b, "; retry after %s", e.RetryAfter)
	}
	if e.Err != nil && e.Message == "" {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of a client error, or "" for any other error.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// IsNotFound reports whether err says the token does not exist. An unknown
// account or zone (KindUnreachable) is not "not found".
func IsNotFound(err error) bool { return KindOf(err) == KindNotFound }

// RetryAfterOf returns how long a rate-limited error asks to wait (0 otherwise).
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) && e.Kind == KindRateLimited {
		return e.RetryAfter
	}
	return 0
}

// SteadyText is err's text without a rate-limit refusal's time to retry: a
// status condition quoting it stays the same across refusals, so an object
// waiting for its turn is not rewritten each time it is told to wait again.
func SteadyText(err error) string {
	var e *Error
	if !errors.As(err, &e) || e.RetryAfter == 0 {
		return err.Error()
	}
	steady := *e
	steady.RetryAfter = 0
	return strings.Replace(err.Error(), e.Error(), steady.Error(), 1)
}
