package cloudflare

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unique"

	"github.com/cloudflare/cloudflare-go/v7/option"
	"github.com/cloudflare/cloudflare-go/v7/zero_trust"
	"github.com/tidwall/gjson"
	"k8s.io/utils/clock"
)

const (
	// DefaultBaseURL is Cloudflare's API.
	DefaultBaseURL = "https://api.cloudflare.com/client/v4"
	// DefaultRequestTimeout bounds one HTTP request.
	DefaultRequestTimeout = 30 * time.Second

	perPage = 1000
	// maxPages stops a buggy or hostile server from paging us forever.
	maxPages = 1000
)

// client implements Client on the official SDK. The SDK never retries (we
// have the rate limiter and the controllers' requeue for that, and a retried
// POST can mint a second token) and every request has a timeout.
type client struct {
	svc         *zero_trust.AccessServiceTokenService
	limiter     *Limiter
	metrics     recorder
	clock       clock.PassiveClock
	credentials []string // API token/key, only to scrub them from error text
	vouchKey    []byte   // derived from the credentials (Vouch)
}

var _ Client = (*client)(nil)

func newClient(cfg AccountConfig, httpClient *http.Client, timeout time.Duration, lim *Limiter, m recorder, clk clock.PassiveClock) *client {
	opts := []option.RequestOption{
		option.WithBaseURL(cfg.BaseURL),
		option.WithHTTPClient(httpClient),
		option.WithMaxRetries(0),
		option.WithRequestTimeout(timeout),
	}
	if cfg.APIToken != "" {
		opts = append(opts, option.WithAPIToken(cfg.APIToken))
	} else {
		opts = append(opts, option.WithAPIKey(cfg.APIKey), option.WithAPIEmail(cfg.Email))
	}
	return &client{
		// Built directly rather than via cloudflare.NewClient, which would
		// also read CLOUDFLARE_* environment variables.
		svc:         zero_trust.NewAccessServiceTokenService(opts...),
		limiter:     lim,
		metrics:     m,
		clock:       clk,
		credentials: []string{cfg.APIToken, cfg.APIKey},
		vouchKey:    vouchKey(cfg),
	}
}

// vouchKey derives Vouch's key from the credentials, so that the proofs an
// operator made stay valid across restarts and replicas, and only holders of
// the credentials can make them.
func vouchKey(cfg AccountConfig) []byte {
	h := sha256.New()
	for _, s := range []string{"servicetoken-operator vouch v1", cfg.APIToken, cfg.APIKey, cfg.Email} {
		_, _ = h.Write([]byte(s))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum(nil)
}

func (c *client) Vouch(parts ...string) string {
	m := hmac.New(sha256.New, c.vouchKey)
	_, _ = m.Write([]byte(strings.Join(parts, "\x00")))
	// 128 bits of the HMAC (as HMAC-SHA-256-128): unforgeable all the same,
	// and half the bytes in every cached object's status.
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// call runs one SDK request through the limiter, records metrics and, on
// failure, classifies it. On success the exchange holds the raw body.
func (c *client) call(ctx context.Context, op string, do func(option.RequestOption) error) (*exchange, error) {
	if err := c.limiter.Wait(ctx); err != nil {
		if e, ok := err.(*Error); ok {
			e.Op = op
		}
		return nil, err
	}
	x := &exchange{}
	start := time.Now()
	err := do(option.WithMiddleware(x.middleware))
	if x.sent {
		c.metrics.request(op, x.status, time.Since(start))
	}
	if x.header != nil && x.status != http.StatusTooManyRequests {
		// Every answer, errors too, says what is left; a 429 pauses by its
		// Retry-After instead (classify).
		c.limiter.Observe(x.header)
	}
	if err != nil || !x.ok() {
		return nil, c.classify(op, x, err)
	}
	// A 2xx that says it failed is not a success we can act on.
	if s := gjson.GetBytes(x.body, "success"); s.Exists() && !s.Bool() {
		return nil, c.malformed(op, x)
	}
	return x, nil
}

// malformed reports a 2xx response we cannot use (e.g. no result id).
func (c *client) malformed(op string, x *exchange) error {
	return c.classify(op, x, nil)
}

func (c *client) List(ctx context.Context, scope Scope, opts ListOptions) ([]Token, error) {
	if err := checkScope("list", scope); err != nil {
		return nil, err
	}
	var out []Token
	seen := map[string]bool{}
	var total gjson.Result // result_info.total_count of the last page that had one
	for page := int64(1); page <= maxPages; page++ {
		var params zero_trust.AccessServiceTokenListParams
		if scope.IsZone() {
			// The zone list documents no query parameters, but may still
			// answer in pages: ask for the next one only when it says so.
			params.ZoneID.Value, params.ZoneID.Present = scope.ZoneID, true
			if page > 1 {
				params.Page.Value, params.Page.Present = page, true
			}
		} else {
			params.AccountID.Value, params.AccountID.Present = scope.AccountID, true
			params.Page.Value, params.Page.Present = page, true
			params.PerPage.Value, params.PerPage.Present = perPage, true
			if opts.Name != "" {
				params.Name.Value, params.Name.Present = opts.Name, true
			}
		}
		// The raw items (not the SDK's decoding) keep every field. The
		// body is read into bytes instead of the SDK's typed page: decoding
		// a page of 1,000 tokens nobody reads cost megabytes and CPU.
		x, err := c.call(ctx, "list", func(o option.RequestOption) error {
			var body []byte
			_, err := c.svc.List(ctx, params, o, option.WithResponseBodyInto(&body))
			return err
		})
		if err != nil {
			return nil, err
		}
		// Without a result array we know nothing; an empty list here would
		// make a controller create duplicates.
		if !gjson.GetBytes(x.body, "result").IsArray() {
			return nil, c.malformed("list", x)
		}
		items := gjson.GetBytes(x.body, "result").Array()
		for _, item := range items {
			// Tokens created or deleted while we page shift items across
			// pages; never report one twice. The name is checked again
			// because ListOptions promises an exact match (and the zone
			// list takes no filter).
			tok := tokenFromJSON(item.Raw)
			if tok.ID == "" || seen[tok.ID] {
				continue
			}
			seen[tok.ID] = true
			if opts.Name == "" || tok.Name == opts.Name {
				out = append(out, tok)
			}
		}
		if t := gjson.GetBytes(x.body, "result_info.total_count"); t.Exists() {
			total = t
		}
		if lastPage(x.body, page, len(items), scope.IsZone()) {
			if err := complete(x, len(seen), total); err != nil {
				return nil, err
			}
			return out, nil
		}
	}
	// A partial list is worse than none: it would look like missing tokens.
	return nil, &Error{Kind: KindTransient, Op: "list", Message: "more than " + strconv.Itoa(maxPages) + " pages"}
}

// lastPage: an empty page always ends the list (the SDK's auto-pager and
// Terraform page until one); total_pages ends it early; without result_info
// paging, a short page (or, for the zone list, any page) is the last.
func lastPage(body []byte, page int64, n int, zone bool) bool {
	if n == 0 {
		return true
	}
	if total := gjson.GetBytes(body, "result_info.total_pages"); total.Exists() {
		return page >= total.Int()
	}
	if zone && !gjson.GetBytes(body, "result_info.page").Exists() {
		return true // an unpaged zone list is one page of everything
	}
	size := int64(perPage)
	if pp := gjson.GetBytes(body, "result_info.per_page"); pp.Exists() && pp.Int() > 0 {
		size = pp.Int()
	}
	return int64(n) < size
}

// complete refuses a list with fewer tokens than Cloudflare counted: pages
// that shifted while others deleted tokens can hide one, and a token missing
// from a list must never look deleted. (More than counted is harmless: a
// token deleted meanwhile is found gone by the next GET.)
func complete(x *exchange, got int, total gjson.Result) error {
	if !total.Exists() {
		return nil
	}
	if want := int(total.Int()); got < want {
		return &Error{Kind: KindTransient, Op: "list", HTTPStatus: x.status,
			Message: fmt.Sprintf("incomplete list: %d tokens read, result_info.total_count says %d (tokens changed while paging?)", got, want)}
	}
	return nil
}

func (c *client) Get(ctx context.Context, scope Scope, id string) (Token, error) {
	if err := checkScope("get", scope, id); err != nil {
		return Token{}, err
	}
	params := scopeParams(scope)
	var res *zero_trust.ServiceToken
	x, err := c.call(ctx, "get", func(o option.RequestOption) (err error) {
		res, err = c.svc.Get(ctx, id, params, o)
		return err
	})
	if err != nil {
		return Token{}, err
	}
	return c.token("get", x, res.JSON.RawJSON())
}

func (c *client) Create(ctx context.Context, scope Scope, spec TokenSpec) (Credentials, error) {
	if err := checkScope("create", scope); err != nil {
		return Credentials{}, err
	}
	var params zero_trust.AccessServiceTokenNewParams
	sp := scopeParams(scope)
	params.AccountID, params.ZoneID = sp.AccountID, sp.ZoneID
	params.Name.Value, params.Name.Present = spec.Name, true
	params.Enabled.Value, params.Enabled.Present = spec.Enabled, true
	if spec.Duration != "" {
		params.Duration.Value, params.Duration.Present = spec.Duration, true
	}
	var res *zero_trust.AccessServiceTokenNewResponse
	x, err := c.call(ctx, "create", func(o option.RequestOption) (err error) {
		res, err = c.svc.New(ctx, params, o)
		return err
	})
	if err != nil {
		return Credentials{}, err
	}
	return c.credentialsOf("create", x, res.JSON.RawJSON(), res.ClientSecret)
}

func (c *client) Update(ctx context.Context, scope Scope, id string, spec TokenSpec) (Token, error) {
	if err := checkScope("update", scope, id); err != nil {
		return Token{}, err
	}
	// PUT with only the fields we own: an empty duration is left alone.
	var params zero_trust.AccessServiceTokenUpdateParams
	sp := scopeParams(scope)
	params.AccountID, params.ZoneID = sp.AccountID, sp.ZoneID
	params.Name.Value, params.Name.Present = spec.Name, true
	params.Enabled.Value, params.Enabled.Present = spec.Enabled, true
	if spec.Duration != "" {
		params.Duration.Value, params.Duration.Present = spec.Duration, true
	}
	var res *zero_trust.ServiceToken
	x, err := c.call(ctx, "update", func(o option.RequestOption) (err error) {
		res, err = c.svc.Update(ctx, id, params, o)
		return err
	})
	if err != nil {
		return Token{}, err
	}
	return c.token("update", x, res.JSON.RawJSON())
}

func (c *client) Delete(ctx context.Context, scope Scope, id string) error {
	if err := checkScope("delete", scope, id); err != nil {
		return err
	}
	var params zero_trust.AccessServiceTokenDeleteParams
	sp := scopeParams(scope)
	params.AccountID, params.ZoneID = sp.AccountID, sp.ZoneID
	_, err := c.call(ctx, "delete", func(o option.RequestOption) error {
		_, err := c.svc.Delete(ctx, id, params, o)
		return err
	})
	return err
}

func (c *client) Refresh(ctx context.Context, accountID, id string) (Token, error) {
	if err := checkAccountOnly("refresh", accountID, id); err != nil {
		return Token{}, err
	}
	var params zero_trust.AccessServiceTokenRefreshParams
	params.AccountID.Value, params.AccountID.Present = accountID, true
	var res *zero_trust.ServiceToken
	x, err := c.call(ctx, "refresh", func(o option.RequestOption) (err error) {
		res, err = c.svc.Refresh(ctx, id, params, o)
		return err
	})
	if err != nil {
		return Token{}, err
	}
	return c.token("refresh", x, res.JSON.RawJSON())
}

func (c *client) Rotate(ctx context.Context, accountID, id string, previousExpiresAt time.Time) (Credentials, error) {
	if err := checkAccountOnly("rotate", accountID, id); err != nil {
		return Credentials{}, err
	}
	var params zero_trust.AccessServiceTokenRotateParams
	params.AccountID.Value, params.AccountID.Present = accountID, true
	// Zero: omit the field, and Cloudflare revokes the old secret at once.
	if !previousExpiresAt.IsZero() {
		params.PreviousClientSecretExpiresAt.Value = previousExpiresAt.UTC()
		params.PreviousClientSecretExpiresAt.Present = true
	}
	var res *zero_trust.AccessServiceTokenRotateResponse
	x, err := c.call(ctx, "rotate", func(o option.RequestOption) (err error) {
		res, err = c.svc.Rotate(ctx, id, params, o)
		return err
	})
	if err != nil {
		return Credentials{}, err
	}
	return c.credentialsOf("rotate", x, res.JSON.RawJSON(), res.ClientSecret)
}

// token converts a result, insisting on an id: a 2xx without one is a
// response we cannot trust.
func (c *client) token(op string, x *exchange, raw string) (Token, error) {
	t := tokenFromJSON(raw)
	if t.ID == "" {
		return Token{}, c.malformed(op, x)
	}
	return t, nil
}

func (c *client) credentialsOf(op string, x *exchange, raw, secret string) (Credentials, error) {
	t := tokenFromJSON(raw)
	if t.ID == "" || secret == "" {
		return Credentials{}, c.malformed(op, x)
	}
	return Credentials{Token: t, ClientSecret: secret}, nil
}

// tokenFromJSON reads a token from the raw result JSON, which also carries
// the fields the typed SDK result lacks (created_at, updated_at, last_seen_at).
// Every field is optional (create and rotate answers have no expires_at):
// what is absent is marked Missing, so callers keep their last known value
// instead of believing a default.
//
// The strings are copies: gjson hands out substrings of raw, and a token kept
// in the inventory would otherwise keep its whole list page alive (about
// 2.5 MiB at 5,000 tokens). The duration is one of a few values, shared.
func tokenFromJSON(raw string) Token {
	r := gjson.Parse(raw)
	t := Token{
		ID:         strings.Clone(r.Get("id").String()),
		ClientID:   strings.Clone(r.Get("client_id").String()),
		Name:       strings.Clone(r.Get("name").String()),
		Duration:   unique.Make(r.Get("duration").String()).Value(),
		Enabled:    true, // only a default: see Missing
		ExpiresAt:  timeOf(r.Get("expires_at")),
		CreatedAt:  timeOf(r.Get("created_at")),
		UpdatedAt:  timeOf(r.Get("updated_at")),
		LastSeenAt: timeOf(r.Get("last_seen_at")),
	}
	if e := r.Get("enabled"); e.Type == gjson.True || e.Type == gjson.False {
		t.Enabled = e.Bool()
	} else {
		t.Missing |= FieldEnabled
	}
	if t.Name == "" {
		t.Missing |= FieldName
	}
	if t.Duration == "" {
		t.Missing |= FieldDuration
	}
	// A "forever" token has no expiry to report; any other absent or
	// unreadable expires_at is unknown, not "never".
	if t.ExpiresAt.IsZero() && t.Duration != "forever" {
		t.Missing |= FieldExpiresAt
	}
	if t.CreatedAt.IsZero() {
		t.Missing |= FieldCreatedAt
	}
	if t.UpdatedAt.IsZero() {
		t.Missing |= FieldUpdatedAt
	}
	return t
}

// timeOf maps missing, null and unparseable timestamps to zero: they are
// informational, and failing a create over one would lose its secret.
func timeOf(v gjson.Result) time.Time {
	if v.Type != gjson.String {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v.Str)
	if err != nil {
		return time.Time{}
	}
	return t
}

// scopeParams fills the SDK's mutually exclusive account/zone path fields;
// the other params types share their field type, so callers copy them over.
// (The SDK's F helper lives in its root package, which would compile every
// Cloudflare service, so fields are set by hand throughout.)
func scopeParams(s Scope) zero_trust.AccessServiceTokenGetParams {
	var p zero_trust.AccessServiceTokenGetParams
	if s.IsZone() {
		p.ZoneID.Value, p.ZoneID.Present = s.ZoneID, true
	} else {
		p.AccountID.Value, p.AccountID.Present = s.AccountID, true
	}
	return p
}

// checkScope rejects what must not reach the wire: a missing account or
// zone, and IDs that would change the request path (the SDK does not escape
// path segments).
func checkScope(op string, s Scope, ids ...string) error {
	segs := append([]string{s.AccountID}, ids...)
	if s.IsZone() {
		segs[0] = s.ZoneID
	}
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." || url.PathEscape(seg) != seg {
			return &Error{Kind: KindInvalid, Op: op, Message: "missing or malformed account, zone or token id"}
		}
	}
	return nil
}

// checkAccountOnly guards refresh and rotate, which Cloudflare offers only
// for account-scoped tokens: without an account id there is nothing to call.
func checkAccountOnly(op, accountID, id string) error {
	if accountID == "" {
		return &Error{Kind: KindInvalid, Op: op, Message: "Cloudflare offers " + op + " only for account-scoped tokens"}
	}
	return checkScope(op, Scope{AccountID: accountID}, id)
}
