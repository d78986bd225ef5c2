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
}

// APIKey is a legacy global API key, sent as X-Auth-Email + X-Auth-Key. It
// may do everything.
type APIKey struct {
	Email string
	Key   string
}

// principal is who made a request. key identifies the credential for the
// rate limiter; it is a hash so no API token sits in the limiter's map.
type principal struct {
	key      string
	readOnly bool
}

type authenticator struct {
	tokens map[string]bool   // token → read-only
	keys   map[string]string // email → key
	// open: nothing configured, so any non-empty credential is accepted
	// (read-write). Missing credentials are still rejected.
	open bool
}

func newAuthenticator(tokens []APIToken, keys []APIKey) *authenticator {
	a := &authenticator{tokens: map[string]bool{}, keys: map[string]string{}}
	for _, t := range tokens {
		if t.Token != "" {
			a.tokens[t.Token] = t.ReadOnly
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

// authenticate checks the Authorization header first and falls back to the
// legacy email+key pair, as Cloudflare does when both are absent or present.
func (a *authenticator) authenticate(h http.Header) (principal, bool) {
	if authz := h.Get("Authorization"); authz != "" {
		scheme, token, ok := strings.Cut(authz, " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return principal{}, false
		}
		readOnly, known := a.tokens[token]
		if !known && !a.open {
			return principal{}, false
		}
		return principal{key: hashKey("bearer", token), readOnly: readOnly}, true
	}
	email, key := h.Get("X-Auth-Email"), h.Get("X-Auth-Key")
	if email == "" || key == "" {
		return principal{}, false
	}
	if want, known := a.keys[email]; !a.open && (!known || want != key) {
		return principal{}, false
	}
	// Cloudflare limits per user, so the budget follows the email.
	return principal{key: hashKey("email", email)}, true
}

func hashKey(kind, v string) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + v))
	return kind + ":" + hex.EncodeToString(sum[:8])
}
