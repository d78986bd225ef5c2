package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
)

// APIToken is a Cloudflare API token the simulator accepts as
// "Authorization: Bearer <Token>". A ReadOnly token may list and get but any
// write is a 403, like a token with only "Access: Service Tokens Read".
type APIToken struct {
	Token    string
	ReadOnly bool
	// User is the Cloudflare user who owns the token. Cloudflare's rate
	// limit is per user, so tokens with the same User share one budget, and
	// so does an APIKey whose Email equals it. Empty: the token is its own
	// user (its user name is Token itself).
	User string
}

// APIKey is a legacy global API key, sent as X-Auth-Email + X-Auth-Key. It
// may do everything. Its budget is its Email's.
type APIKey struct {
	Email string
	Key   string
}

// principal is who made a request. user is the rate limiter's key for the
// user; it is a hash so no API token sits in the limiter's map.
type principal struct {
	user     string
	readOnly bool
}

type authenticator struct {
	tokens map[string]APIToken
	keys   map[string]string // email → key
	// open: nothing configured, so any well-formed credential is accepted
	// (read-write). Missing credentials are still rejected.
	open bool
}

func newAuthenticator(tokens []APIToken, keys []APIKey) *authenticator {
	a := &authenticator{tokens: map[string]APIToken{}, keys: map[string]string{}}
	for _, t := range tokens {
		if t.Token != "" {
			a.tokens[t.Token] = t
		}
	}
	for _, k := range keys {
		if k.Email != "" && k.Key != "" {
			a.keys[k.Email] = k.Key
		}
	}
	a.open = len(a.tokens) == 0 && len(a.keys) == 0
	return a
}

// userOf is the user name of an API token: its configured User, else the
// token itself.
func (a *authenticator) userOf(token string) string {
	if u := a.tokens[token].User; u != "" {
		return u
	}
	return token
}

// authenticate checks the Authorization header first and falls back to the
// legacy email+key pair. It returns the failure to answer with, if any: a
// 400 (6003) for malformed credentials, else a 401 for missing or unknown
// ones. Format comes first so that a typo is told apart from a revoked
// credential, as Cloudflare does.
func (a *authenticator) authenticate(h http.Header) (principal, *response) {
	if authz := h.Get("Authorization"); authz != "" {
		scheme, token, _ := strings.Cut(authz, " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || !wellFormedToken(token) {
			r := invalidHeaders(apiError{Code: CodeInvalidAuthorization, Message: "Invalid format for Authorization header"})
			return principal{}, &r
		}
		t, known := a.tokens[token]
		if !known && !a.open {
			r := authFailure(http.StatusUnauthorized)
			return principal{}, &r
		}
		return principal{user: userKey(a.userOf(token)), readOnly: t.ReadOnly}, nil
	}
	email, key := h.Get("X-Auth-Email"), h.Get("X-Auth-Key")
	var chain []apiError
	if email != "" && !strings.Contains(email, "@") {
		chain = append(chain, apiError{Code: CodeInvalidAuthEmail, Message: "Invalid format for X-Auth-Email header"})
	}
	if key != "" && !alphanumeric(key) {
		chain = append(chain, apiError{Code: CodeInvalidAuthKey, Message: "Invalid format for X-Auth-Key header"})
	}
	if len(chain) > 0 {
		r := invalidHeaders(chain...)
		return principal{}, &r
	}
	if email == "" || key == "" {
		r := authFailure(http.StatusUnauthorized)
		return principal{}, &r
	}
	if want, known := a.keys[email]; !a.open && (!known || want != key) {
		r := authFailure(http.StatusUnauthorized)
		return principal{}, &r
	}
	return principal{user: userKey(email)}, nil
}

// wellFormedToken reports whether token is a non-empty RFC 6750 b64token
// (letters, digits and -._~+/ with = padding allowed anywhere, for
// simplicity).
func wellFormedToken(token string) bool {
	if token == "" {
		return false
	}
	for _, c := range token {
		if !isAlnum(c) && !strings.ContainsRune("-._~+/=", c) {
			return false
		}
	}
	return true
}

// alphanumeric is the legacy key format: Cloudflare's global keys are hex.
func alphanumeric(s string) bool {
	for _, c := range s {
		if !isAlnum(c) {
			return false
		}
	}
	return true
}

func isAlnum(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// userKey is the rate limiter's key for a user name (an APIToken's User, an
// APIKey's Email, or an own-user token).
func userKey(user string) string {
	sum := sha256.Sum256([]byte("user\x00" + user))
	return "user:" + hex.EncodeToString(sum[:8])
}

// CredentialID is the ID under which the request log records requests made
// with apiToken (Request.Credential): the first 12 hex digits of a SHA-256,
// enough to tell a test's few credentials apart and useless for recovering
// the token.
func CredentialID(apiToken string) string { return credentialHash("token\x00" + apiToken) }

// credentialOf is the CredentialID of a request's credential as sent (a
// Bearer token, else a legacy email and key), known or not; empty without
// one.
func credentialOf(h http.Header) string {
	if authz := h.Get("Authorization"); authz != "" {
		_, token, _ := strings.Cut(authz, " ")
		return CredentialID(strings.TrimSpace(token))
	}
	if email, key := h.Get("X-Auth-Email"), h.Get("X-Auth-Key"); email != "" || key != "" {
		return credentialHash("key\x00" + email + "\x00" + key)
	}
	return ""
}

func credentialHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}
