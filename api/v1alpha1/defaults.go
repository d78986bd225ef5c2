package v1alpha1

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// SameDuration reports whether two duration strings mean the same length
// ("1h" and "60m"); Cloudflare may echo a duration in another spelling.
func SameDuration(a, b string) bool {
	if a == b {
		return true
	}
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	return errA == nil && errB == nil && da == db
}

// ParseTokenDuration parses a ServiceToken duration: a Go duration of at
// least one minute, or "forever" (forever=true, d=0).
func ParseTokenDuration(s string) (d time.Duration, forever bool, err error) {
	if s == DurationForever {
		return 0, true, nil
	}
	d, err = time.ParseDuration(s)
	if err != nil {
		return 0, false, fmt.Errorf("invalid duration %q: want a Go duration such as 720h, or forever", s)
	}
	if d < time.Minute {
		return 0, false, fmt.Errorf("invalid duration %q: must be at least 1m, or forever", s)
	}
	return d, false, nil
}

// Effective returns the settings of a ServiceToken with every default applied.
// The spec itself is never modified.
type Effective struct {
	TokenName       string
	Duration        string // as sent to Cloudflare
	DurationValue   time.Duration
	Forever         bool
	Enabled         bool
	RenewBefore     time.Duration
	RenewalAction   RenewalAction
	RotateEvery     time.Duration // 0: no routine rotation
	GracePeriod     time.Duration
	SecretName      string
	ClientIDKey     string
	ClientSecretKey string
	DeletionPolicy  DeletionPolicy
	AccountKind     string
}

// Effective is EffectiveIn for an operator run without --cluster-name.
func (st *ServiceToken) Effective() (Effective, error) { return st.EffectiveIn("") }

// EffectiveIn computes the ServiceToken's settings with defaults applied, as
// an operator started with --cluster-name=clusterName sees them (the cluster
// name is part of the default token name). It fails only for values the
// schema should have rejected (a defence against objects stored before a
// validation rule existed).
func (st *ServiceToken) EffectiveIn(clusterName string) (Effective, error) {
	s := st.Spec
	e := Effective{
		TokenName:       s.TokenName,
		Duration:        s.Duration,
		Enabled:         s.Enabled == nil || *s.Enabled,
		RenewalAction:   RenewalRefresh,
		SecretName:      st.Name,
		ClientIDKey:     DefaultClientIDKey,
		ClientSecretKey: DefaultClientSecretKey,
		DeletionPolicy:  DeletionDelete,
		AccountKind:     KindCloudflareAccount,
	}
	if e.TokenName == "" {
		e.TokenName = DefaultTokenName(st.Namespace, st.Name, clusterName, st.UID)
	}
	if e.Duration == "" {
		e.Duration = DefaultDuration
	}
	var err error
	if e.DurationValue, e.Forever, err = ParseTokenDuration(e.Duration); err != nil {
		return e, err
	}
	e.RenewBefore = e.DurationValue / 3
	if r := s.Renewal; r != nil {
		if e.RenewBefore, err = parseOptional("renewal.before", r.Before, e.RenewBefore); err != nil {
			return e, err
		}
		if r.Action != "" {
			e.RenewalAction = r.Action
		}
	}
	if !e.Forever && (e.RenewBefore <= 0 || e.RenewBefore >= e.DurationValue) {
		return e, fmt.Errorf("renewal.before %s must be greater than 0 and shorter than duration %s", e.RenewBefore, e.Duration)
	}
	e.GracePeriod = 24 * time.Hour
	if r := s.Rotation; r != nil {
		if e.RotateEvery, err = parseOptional("rotation.every", r.Every, 0); err != nil {
			return e, err
		}
		if e.GracePeriod, err = parseOptional("rotation.gracePeriod", r.GracePeriod, e.GracePeriod); err != nil {
			return e, err
		}
	}
	if e.GracePeriod < 0 {
		return e, fmt.Errorf("rotation.gracePeriod %s must not be negative", e.GracePeriod)
	}
	if e.RotateEvery > 0 && e.GracePeriod > e.RotateEvery {
		// Cloudflare keeps one previous secret: a longer grace would be cut
		// short by the next rotation anyway.
		e.GracePeriod = e.RotateEvery
	}
	if sec := s.Secret; sec != nil {
		if sec.Name != "" {
			e.SecretName = sec.Name
		}
		if k := sec.Keys; k != nil {
			if k.ClientID != "" {
				e.ClientIDKey = k.ClientID
			}
			if k.ClientSecret != "" {
				e.ClientSecretKey = k.ClientSecret
			}
		}
	}
	if e.ClientIDKey == e.ClientSecretKey {
		return e, fmt.Errorf("secret.keys.clientID and secret.keys.clientSecret are both %q", e.ClientIDKey)
	}
	if s.DeletionPolicy != "" {
		e.DeletionPolicy = s.DeletionPolicy
	}
	if s.AccountRef.Kind != "" {
		e.AccountKind = s.AccountRef.Kind
	}
	return e, nil
}

// parseOptional parses an optional Go duration field, returning def when unset.
func parseOptional(field, value string, def time.Duration) (time.Duration, error) {
	if value == "" {
		return def, nil
	}
	d, err := time.ParseDuration(value)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q: want a Go duration such as 24h", field, value)
	}
	return d, nil
}

// DefaultTokenName is the Cloudflare token name of a ServiceToken without
// spec.tokenName: "<namespace>/<name>#<uid>", or
// "<namespace>/<name>@<cluster>#<uid>" when the operator runs with
// --cluster-name. "<namespace>/<name>" alone is not unique in an account that
// several clusters (or Terraform, or people) share; the UID is, and it is what
// proves a token to be this object's (OwnerMarker). Without a UID (an object
// not yet created) the marker is left out.
func DefaultTokenName(namespace, name, cluster string, uid types.UID) string {
	n := namespace + "/" + name
	if cluster != "" {
		n += "@" + cluster
	}
	return n + OwnerMarker(uid)
}

// OwnerMarker is the suffix "#<uid>" that every token a ServiceToken
// creates carries in its name (MarkedTokenName), and a default name keeps:
// nobody else has reason to end a token's name with this object's UID.
// Empty for an empty UID.
func OwnerMarker(uid types.UID) string {
	if uid == "" {
		return ""
	}
	return "#" + string(uid)
}

// MarkerOf returns the UID of the OwnerMarker a token name ends with: the
// ServiceToken that made the token. ok is false for a name without one (a
// token made by Terraform, the dashboard, or released by deletionPolicy
// Orphan).
func MarkerOf(name string) (types.UID, bool) {
	i := strings.LastIndex(name, "#")
	if i < 0 {
		return "", false
	}
	uid := name[i+1:]
	if !isUID(uid) {
		return "", false
	}
	return types.UID(uid), true
}

func isHex(c rune) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// isUID reports whether s looks like a Kubernetes UID (a UUID in its
// canonical 8-4-4-4-12 form).
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case !isHex(c):
			return false
		}
	}
	return true
}

// UnmarkedTokenName is name without its OwnerMarker (name itself when it
// has none).
func UnmarkedTokenName(name string) string {
	if uid, ok := MarkerOf(name); ok {
		return strings.TrimSuffix(name, OwnerMarker(uid))
	}
	return name
}

// MarkedTokenName is the name a token is created with: name itself when it
// already ends with the object's OwnerMarker (a default name), else name
// with the marker appended. An explicit spec.tokenName is set by a rename
// once the token's credential is stored.
func MarkedTokenName(name string, uid types.UID) string {
	if strings.HasSuffix(name, OwnerMarker(uid)) {
		return name
	}
	return name + OwnerMarker(uid)
}

// EffectiveRateLimit returns the account's budget with defaults applied.
func (a AccountSettings) EffectiveRateLimit() (requests int, period time.Duration) {
	requests, period = DefaultRateLimitRequests, 5*time.Minute
	if rl := a.RateLimit; rl != nil {
		if rl.Requests != nil && *rl.Requests > 0 {
			requests = int(*rl.Requests)
		}
		if d, err := time.ParseDuration(rl.Period); err == nil && d > 0 {
			period = d
		}
	}
	return requests, period
}

// EffectiveAPIURL returns the account's API base URL, or fallback when unset.
func (a AccountSettings) EffectiveAPIURL(fallback string) string {
	if a.APIURL != "" {
		return strings.TrimRight(a.APIURL, "/")
	}
	if fallback != "" {
		return strings.TrimRight(fallback, "/")
	}
	return DefaultAPIURL
}

// Legacy reports whether the keys select the legacy API key + e-mail scheme.
func (k CredentialsKeys) Legacy() bool { return k.APIKeyKey != "" }

// TokenKey returns the Secret key of the API token, with its default.
func (k CredentialsKeys) TokenKey() string {
	if k.APITokenKey != "" {
		return k.APITokenKey
	}
	return DefaultAPITokenKey
}
