package sim

import (
	"encoding/json"
	"net/http"
	"time"
)

// Operation names, as used in Stats and RequestLog.
const (
	OpList    = "list"
	OpGet     = "get"
	OpCreate  = "create"
	OpUpdate  = "update"
	OpDelete  = "delete"
	OpRefresh = "refresh"
	OpRotate  = "rotate"
	// OpUnknown is any request under /client/v4 that matches no endpoint.
	OpUnknown = "unknown"
)

// Error codes in failure envelopes. Only CodeAuth is published by
// Cloudflare; 7000/7001/7003 are Cloudflare's generic routing codes; the
// rest are the simulator's own (see the package doc). Clients should key
// on the HTTP status.
const (
	CodeNoRoute          = 7000
	CodeMethodNotAllowed = 7001
	CodeUnknownScope     = 7003
	CodeAuth             = 10000
	CodeInvalidRequest   = 10400
	CodeNotFound         = 10404
	CodeRateLimited      = 10429
)

// apiError is one entry of the envelope's errors array.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type resultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
}

// envelope is Cloudflare's response wrapper. Result is nil (JSON null) on
// failure.
type envelope struct {
	Success    bool        `json:"success"`
	Errors     []apiError  `json:"errors"`
	Messages   []apiError  `json:"messages"`
	Result     any         `json:"result"`
	ResultInfo *resultInfo `json:"result_info,omitempty"`
}

// response is what a handler decides; the server writes it, or drops it
// for a drop-response fault.
type response struct {
	status int
	header http.Header
	body   envelope
	// secret is the client_secret in body, if any, so the server can note it
	// in IssuedSecrets once it has really been sent.
	secret string
}

func ok(status int, result any) response {
	return response{status: status, header: http.Header{}, body: envelope{
		Success: true, Errors: []apiError{}, Messages: []apiError{}, Result: result,
	}}
}

func fail(status, code int, message string) response {
	return response{status: status, header: http.Header{}, body: envelope{
		Errors: []apiError{{Code: code, Message: message}}, Messages: []apiError{},
	}}
}

func authFailure(status int) response {
	return fail(status, CodeAuth, "Authentication error")
}

func invalid(message string) response {
	return fail(http.StatusBadRequest, CodeInvalidRequest, message)
}

func notFound() response {
	return fail(http.StatusNotFound, CodeNotFound, "service token not found")
}

// tokenJSON is the published token object. ExpiresAt and LastSeenAt are
// omitted when unset (the schema's timestamps are not nullable); ClientSecret
// only ever appears in create and rotate responses.
type tokenJSON struct {
	ID           string `json:"id"`
	ClientID     string `json:"client_id"`
	Name         string `json:"name"`
	Duration     string `json:"duration"`
	Enabled      bool   `json:"enabled"`
	ExpiresAt    string `json:"expires_at,omitempty"`
	CreatedAt    string `json:"created_at"`
	UpdatedAt    string `json:"updated_at"`
	LastSeenAt   string `json:"last_seen_at,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
}

func publicToken(t TokenState) tokenJSON {
	return tokenJSON{
		ID:         t.ID,
		ClientID:   t.ClientID,
		Name:       t.Name,
		Duration:   t.Duration,
		Enabled:    t.Enabled,
		ExpiresAt:  formatTime(t.ExpiresAt),
		CreatedAt:  formatTime(t.CreatedAt),
		UpdatedAt:  formatTime(t.UpdatedAt),
		LastSeenAt: formatTime(t.LastSeenAt),
	}
}

// withSecret answers with the token plus its current secret: create and
// rotate only.
func withSecret(status int, t TokenState) response {
	pt := publicToken(t)
	pt.ClientSecret = t.ClientSecret
	r := ok(status, pt)
	r.secret = t.ClientSecret
	return r
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// writeJSON writes a response with the envelope as its body.
func writeJSON(w http.ResponseWriter, r response) {
	h := w.Header()
	for k, v := range r.header {
		h[k] = v
	}
	h.Set("Content-Type", "application/json")
	b, err := json.Marshal(r.body)
	if err != nil {
		// Only a bug can get here; answer in the contract's shape anyway.
		b, _ = json.Marshal(fail(http.StatusInternalServerError, 10500, "internal error").body)
		r.status = http.StatusInternalServerError
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(b)
}
