// Package cloudflare is the operator's narrow seam to the Cloudflare Access
// service-token API. The controllers see only the Client interface and the
// typed errors in errors.go; the implementation sits on the official SDK
// (github.com/cloudflare/cloudflare-go/v7) and is exercised in tests against
// the simulator in ./sim over real HTTP.
package cloudflare

import (
	"context"
	"time"
)

// Scope says where a token lives: an account, or (ZoneID set) a zone.
// Cloudflare offers refresh and rotate only for account-scoped tokens.
type Scope struct {
	AccountID string
	ZoneID    string
}

// IsZone reports whether the scope is a zone.
func (s Scope) IsZone() bool { return s.ZoneID != "" }

// Token is a service token as Cloudflare reports it. It never carries a secret.
type Token struct {
	ID       string
	ClientID string
	Name     string
	// Duration is the Go-style duration or "forever", as Cloudflare echoes it.
	Duration string
	Enabled  bool
	// ExpiresAt is zero when Cloudflare reports no expiry (a "forever" token).
	ExpiresAt  time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	LastSeenAt time.Time
	// Missing lists the fields the response left out; they hold zero values
	// (Enabled: true). Cloudflare documents every field as optional, and
	// create and rotate never carry expires_at.
	Missing Field
}

// Field names optional token fields, as a bit set.
type Field uint8

// The optional fields Token.Missing can name.
const (
	FieldName Field = 1 << iota
	FieldDuration
	FieldEnabled
	FieldExpiresAt
	FieldCreatedAt
	FieldUpdatedAt
)

// Knows reports whether the response carried f.
func (t Token) Knows(f Field) bool { return t.Missing&f == 0 }

// Fill returns t with each missing field taken from prev, the last known
// state of the same token (a different or empty prev changes nothing).
func (t Token) Fill(prev Token) Token {
	if prev.ID == "" || prev.ID != t.ID {
		return t
	}
	fill := func(f Field, apply func()) {
		if !t.Knows(f) && prev.Knows(f) {
			apply()
			t.Missing &^= f
		}
	}
	fill(FieldName, func() { t.Name = prev.Name })
	fill(FieldDuration, func() { t.Duration = prev.Duration })
	fill(FieldEnabled, func() { t.Enabled = prev.Enabled })
	fill(FieldExpiresAt, func() { t.ExpiresAt = prev.ExpiresAt })
	fill(FieldCreatedAt, func() { t.CreatedAt = prev.CreatedAt })
	fill(FieldUpdatedAt, func() { t.UpdatedAt = prev.UpdatedAt })
	return t
}

// Credentials is a token together with the client secret that only create and
// rotate ever return. Its String method masks the secret so it cannot reach a
// log line by accident.
type Credentials struct {
	Token
	ClientSecret string
}

// String masks the secret.
func (c Credentials) String() string {
	return "Credentials{ID:" + c.ID + " ClientID:" + c.ClientID + " ClientSecret:<redacted>}"
}

// GoString masks the secret for %#v too.
func (c Credentials) GoString() string { return c.String() }

// TokenSpec is what the operator asks for on create and update.
type TokenSpec struct {
	Name     string
	Duration string // Go duration or "forever"; empty lets Cloudflare default it
	Enabled  bool
}

// ListOptions filters a list. The client pages through every result itself
// (per_page 1000), so one call returns the whole account's tokens.
type ListOptions struct {
	// Name filters by exact name (account scope only; zone lists take no filter
	// and the client filters locally).
	Name string
}

// Client is every Cloudflare operation the controllers use. Implementations
// are safe for concurrent use. Every error is, or wraps, an *Error.
type Client interface {
	List(ctx context.Context, scope Scope, opts ListOptions) ([]Token, error)
	Get(ctx context.Context, scope Scope, id string) (Token, error)
	Create(ctx context.Context, scope Scope, spec TokenSpec) (Credentials, error)
	Update(ctx context.Context, scope Scope, id string, spec TokenSpec) (Token, error)
	Delete(ctx context.Context, scope Scope, id string) error
	// Refresh extends the expiry of an account-scoped token; the secret stays.
	Refresh(ctx context.Context, accountID, id string) (Token, error)
	// Rotate issues a new secret for an account-scoped token. The previous
	// secret keeps working until previousExpiresAt; zero revokes it at once.
	Rotate(ctx context.Context, accountID, id string, previousExpiresAt time.Time) (Credentials, error)
	// Vouch returns a proof of parts that only these credentials can make (an
	// HMAC keyed with a hash of them), and that reveals nothing about them.
	// The operator keeps Vouch(uid, tokenID) in a ServiceToken's status: who
	// may write status, but not read the credentials, cannot forge it.
	Vouch(parts ...string) string
}

// AccountConfig is everything needed to build a Client for one account object.
type AccountConfig struct {
	// Key identifies the account object (e.g. "ClusterCloudflareAccount//prod"
	// or "CloudflareAccount/ns/name"); clients and rate limiters are shared per key.
	Key     string
	BaseURL string
	// Exactly one scheme: APIToken (Bearer), or APIKey + Email (legacy).
	APIToken string
	APIKey   string
	Email    string
	// RateLimit is the client-side budget shared by every caller of this account.
	RateLimit RateLimit
}

// RateLimit is Requests per Period.
type RateLimit struct {
	Requests int
	Period   time.Duration
}

// Factory builds (and caches) one Client per account. A Client is rebuilt when
// the account's credentials or base URL change; its rate limiter survives a
// rebuild only when the budget is unchanged.
type Factory interface {
	ClientFor(cfg AccountConfig) (Client, error)
	// Cached returns the client last built for key, if any: deleting a token
	// must still work after the account's credentials Secret is gone (for
	// example when its namespace is being deleted).
	Cached(key string) (Client, bool)
	// Forget drops the cached client of a deleted account.
	Forget(key string)
}
