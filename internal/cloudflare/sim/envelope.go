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

// Error codes in failure envelopes. CodeAuth is published by Cloudflare;
// the 6xxx codes, 7000 and 7003 are observed on Cloudflare's API (7001 is
// its generic method-not-allowed); the rest are the simulator's own (see the
// package doc). Clients should key on the HTTP status.
const (
	CodeInvalidHeaders       = 6003 // 400, with the detail in error_chain
	CodeInvalidAuthEmail     = 6102 // in error_chain: malformed X-Auth-Email
	CodeInvalidAuthKey       = 6103 // in error_chain: malformed X-Auth-Key
	CodeInvalidAuthorization = 6111 // in error_chain: malformed Authorization
	CodeNoRoute              = 7000
	CodeMethodNotAllowed     = 7001
	CodeUnknownScope         = 7003
	CodeAuth                 = 10000
	CodeInvalidRequest       = 10400
	CodeNotFound             = 10404
	CodeRateLimited          = 10429
)

// apiError is one entry of the envelope's errors array. ErrorChain is set
// only on a 6003, as Cloudflare does.
type apiError struct {
	Code       int        `json:"code"`
	Message    string     `json:"message"`
	ErrorChain []apiError `json:"error_chain,omitempty"`
}

type resultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
	// omitTotals leaves total_count and total_pages out (OmitTotalPages).
	omitTotals bool
}

// MarshalJSON writes the published fields, without the totals when they
// are to be omitted (a zero total is still written otherwise).
func (ri resultInfo) MarshalJSON() ([]byte, error) {
	type plain resultInfo
	if !ri.omitTotals {
		return json.Marshal(plain(ri))
	}
	return json.Marshal(struct {
		Page    int `json:"page"`
		PerPage int `json:"per_page"`
		Count   int `json:"count"`
	}{ri.Page, ri.PerPage, ri.Count})
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
	// created is the ID of the token a create made (for the request log).
	created string
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

// invalidHeaders is Cloudflare's answer to malformed credentials: the
// chain says which header.
func invalidHeaders(chain ...apiError) response {
	r := fail(http.StatusBadRequest, CodeInvalidHeaders, "Invalid request headers")
	r.body.Errors[0].ErrorChain = chain
	return r
}

func invalid(message string) response {
	return fail(http.StatusBadRequest, CodeInvalidRequest, message)
}

func notFound() response {
	return fail(http.StatusNotFound, CodeNotFound, "service token not found")
}

// tokenJSON is the published token object (get, list, update, delete,
// refresh). ExpiresAt and LastSeenAt are omitted when unset (the schema's
// timestamps are not nullable).
type tokenJSON struct {
	ID         string `json:"id"`
	ClientID   string `json:"client_id"`
	Name       string `json:"name"`
	Duration   string `json:"duration"`
	Enabled    bool   `json:"enabled"`
	ExpiresAt  string `json:"expires_at,omitempty"`
	CreatedAt  string `json:"created_at"`
	UpdatedAt  string `json:"updated_at"`
	LastSeenAt string `json:"last_seen_at,omitempty"`
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

// createJSON is the result of schema access_create_response (create and
// rotate): the secret, and no expires_at or last_seen_at.
type createJSON struct {
	ID           string `json:"id"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Name         string `json:"name"`
	Duration     string `json:"duration"`
	Enabled      bool   `json:"enabled"`
	CreatedAt    string `json:"created_at"`
	UpdatedAt    string `json:"updated_at"`
}

// withSecret answers in the create shape, with the token's current secret:
// create, rotate, and a rotating PUT with SecretInUpdateResponse.
func withSecret(status int, t TokenState) response {
	r := ok(status, createJSON{
		ID:           t.ID,
		ClientID:     t.ClientID,
		ClientSecret: t.ClientSecret,
		Name:         t.Name,
		Duration:     t.Duration,
		Enabled:      t.Enabled,
		CreatedAt:    formatTime(t.CreatedAt),
		UpdatedAt:    formatTime(t.UpdatedAt),
	})
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
