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
	// Limiter returns the account's limiter, nil before its first client.
	Limiter(key string) *Limiter
}

type factory struct {
	opts    FactoryOptions
	http    *http.Client
	metrics recorder
	hashKey []byte // per-process HMAC key, so cached hashes reveal nothing

	mu      sync.Mutex
	entries map[string]*entry
}

// entry is one account's cached client. Credentials are kept only inside
// the client, never as map keys or here.
type entry struct {
	hash    string
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
		opts:    opts,
		http:    hc,
		metrics: recorder{on: opts.Metrics},
		hashKey: key,
		entries: map[string]*entry{},
	}
}

// ClientFor returns the cached client of cfg.Key, rebuilding it when the
// credentials or base URL changed. The limiter survives a rebuild (with its
// queue and any 429 pause) unless the budget changed.
func (f *factory) ClientFor(cfg AccountConfig) (Client, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	budget := normalizeBudget(cfg.RateLimit)
	hash := f.hash(cfg)

	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries[cfg.Key]
	if e != nil && e.hash == hash && e.limiter.Budget() == budget {
		return e.client, nil
	}
	var lim *Limiter
	if e != nil && e.limiter.Budget() == budget {
		lim = e.limiter
	} else {
		lim = newLimiter(budget, f.opts.MaxWait, f.opts.Clock, f.metrics)
	}
	c := newClient(cfg, f.http, f.opts.RequestTimeout, lim, f.metrics, f.opts.Clock)
	f.entries[cfg.Key] = &entry{hash: hash, client: c, limiter: lim}
	return c, nil
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
	delete(f.entries, key)
}

func (f *factory) Limiter(key string) *Limiter {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e := f.entries[key]; e != nil {
		return e.limiter
	}
	return nil
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
