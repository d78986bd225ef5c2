package cloudflare

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// FactoryOptions configures every client a factory builds. Zero values are
// usable defaults.
type FactoryOptions struct {
	// HTTPClient is used as is when set. Otherwise a client on Transport
	// (default: a clone of http.DefaultTransport) that does not follow
	// redirects: the API never redirects, and a redirect must not carry the
	// API token elsewhere.
	HTTPClient *http.Client
	Transport  http.RoundTripper
	// RequestTimeout bounds each HTTP request (default 30s).
	RequestTimeout time.Duration
	// MaxWait is the longest a call queues in the rate limiter before it is
	// refused with KindRateLimited (default 2s).
	MaxWait time.Duration
	// Metrics turns on the Prometheus metrics (registered on
	// controller-runtime's registry).
	Metrics bool
	// Clock drives the rate limiters and Retry-After dates (default real).
	Clock clock.Clock
}

// LimiterSource is implemented by the factory NewFactory returns: a
// scheduler can look at an account's remaining budget before it calls.
type LimiterSource interface {
	// Limiter returns the account's limiter (shared by every account using
	// the same credentials), nil before its first client.
	Limiter(key string) *Limiter
	// CredentialsKey identifies the credentials (and base URL) of the
	// account's current client, without revealing them: accounts that share
	// it share one budget and see the same tokens. "" before its first client.
	CredentialsKey(key string) string
}

type factory struct {
	opts    FactoryOptions
	http    *http.Client
	metrics recorder
	hashKey []byte // per-process HMAC key, so cached hashes reveal nothing

	mu       sync.Mutex
	entries  map[string]*entry
	limiters map[string]*Limiter // by credentials hash: Cloudflare budgets per user
}

// entry is one account's cached client. Credentials are kept only inside
// the client, never as map keys or here.
type entry struct {
	hash    string
	budget  RateLimit
	client  *client
	limiter *Limiter
}

var (
	_ Factory       = (*factory)(nil)
	_ LimiterSource = (*factory)(nil)
)

// NewFactory returns a Factory that caches one client per AccountConfig.Key.
func NewFactory(opts FactoryOptions) Factory {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	hc := opts.HTTPClient
	if hc == nil {
		rt := opts.Transport
		if rt == nil {
			rt = http.DefaultTransport.(*http.Transport).Clone()
		}
		hc = &http.Client{
			Transport:     rt,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if opts.Metrics {
		RegisterMetrics()
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &factory{
		opts:     opts,
		http:     hc,
		metrics:  recorder{on: opts.Metrics},
		hashKey:  key,
		entries:  map[string]*entry{},
		limiters: map[string]*Limiter{},
	}
}

// ClientFor returns the cached client of cfg.Key, rebuilding it when the
// credentials or base URL changed. Clients with the same credentials share
// one limiter (with its queue and any 429 pause), whatever account object
// they serve: Cloudflare counts every request of a user against one budget.
// Its budget is the smallest any of those accounts configures.
func (f *factory) ClientFor(cfg AccountConfig) (Client, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	budget := normalizeBudget(cfg.RateLimit)
	hash := f.hash(cfg)

	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries[cfg.Key]
	if e != nil && e.hash == hash && e.budget == budget {
		return e.client, nil
	}
	old := e
	lim := f.limiters[hash]
	if lim == nil && old != nil && old.hash != hash && f.usersLocked(old.hash) == 1 {
		// New credentials of the same account (a rotated API token, most
		// likely of the same user): its queue and any 429 pause carry over.
		lim = old.limiter
		delete(f.limiters, old.hash)
		f.limiters[hash] = lim
	}
	if lim == nil {
		lim = newLimiter(budget, f.opts.MaxWait, f.opts.Clock, f.metrics)
		f.limiters[hash] = lim
	}
	e = &entry{hash: hash, budget: budget, limiter: lim,
		client: newClient(cfg, f.http, f.opts.RequestTimeout, lim, f.metrics, f.opts.Clock)}
	f.entries[cfg.Key] = e
	if old != nil && old.hash != hash && f.limiters[old.hash] != nil {
		f.releaseLocked(old.hash)
	}
	lim.setBudget(f.smallestBudgetLocked(hash))
	return e.client, nil
}

// smallestBudgetLocked is the tightest budget among the accounts on hash.
func (f *factory) smallestBudgetLocked(hash string) RateLimit {
	var out RateLimit
	for _, e := range f.entries {
		if e.hash != hash {
			continue
		}
		if out.Requests == 0 || perSecond(e.budget) < perSecond(out) {
			out = e.budget
		}
	}
	return out
}

func perSecond(b RateLimit) float64 { return float64(b.Requests) / b.Period.Seconds() }

func (f *factory) usersLocked(hash string) int {
	n := 0
	for _, e := range f.entries {
		if e.hash == hash {
			n++
		}
	}
	return n
}

// releaseLocked drops the limiter of hash once no account uses it.
func (f *factory) releaseLocked(hash string) {
	for _, e := range f.entries {
		if e.hash == hash {
			f.limiters[hash].setBudget(f.smallestBudgetLocked(hash))
			return
		}
	}
	delete(f.limiters, hash)
}

func (f *factory) Cached(key string) (Client, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.entries[key]; e != nil {
		return e.client, true
	}
	return nil, false
}

func (f *factory) Forget(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.entries[key]; e != nil {
		delete(f.entries, key)
		f.releaseLocked(e.hash)
	}
}

func (f *factory) Limiter(key string) *Limiter {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.entries[key]; e != nil {
		return e.limiter
	}
	return nil
}

func (f *factory) CredentialsKey(key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.entries[key]; e != nil {
		return "credentials:" + e.hash[:16]
	}
	return ""
}

// hash identifies the credentials and base URL without keeping them.
func (f *factory) hash(cfg AccountConfig) string {
	m := hmac.New(sha256.New, f.hashKey)
	for _, s := range []string{cfg.BaseURL, cfg.APIToken, cfg.APIKey, cfg.Email} {
		// Length-prefix each field so no two configs serialize alike.
		_, _ = m.Write([]byte{byte(len(s) >> 24), byte(len(s) >> 16), byte(len(s) >> 8), byte(len(s))})
		_, _ = m.Write([]byte(s))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// validate defaults the base URL and checks what would otherwise fail on
// every call. Its messages never include a credential.
func validate(cfg *AccountConfig) error {
	bad := func(msg string) error { return &Error{Kind: KindInvalid, Op: "configure", Message: msg} }
	if cfg.Key == "" {
		return bad("account key is empty")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return bad("base URL must be an absolute http(s) URL without user info")
	}
	hasToken, hasKey := cfg.APIToken != "", cfg.APIKey != "" || cfg.Email != ""
	switch {
	case hasToken && hasKey:
		return bad("set either an API token or an API key with email, not both")
	case !hasToken && (cfg.APIKey == "" || cfg.Email == ""):
		return bad("an API token, or an API key together with its email, is required")
	case strings.ContainsAny(cfg.APIToken+cfg.APIKey+cfg.Email, "\r\n"):
		return bad("credentials contain a line break")
	}
	return nil
}
