package sim

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Options configures a Server. The zero value is a server with no accounts
// or zones (every call is a 404), open authentication, Cloudflare's rate
// limit and lockout, the real clock and no faults.
type Options struct {
	// Accounts and Zones are the IDs the API knows; others are a 404.
	Accounts []string
	Zones    []string
	// APITokens (Bearer) and APIKeys (legacy email+key) are the accepted
	// credentials. With neither set, any well-formed credential is accepted.
	APITokens []APIToken
	APIKeys   []APIKey
	// RateLimit is the per-user budget; zero is 1200 per 5 minutes, a
	// negative Requests is unlimited.
	RateLimit RateLimit
	// Lockout is how long a user who exceeded the budget is refused,
	// counted from the request that exceeded it; zero is DefaultLockout.
	Lockout time.Duration
	// Outside are other clients spending users' budgets (see
	// OutsideConsumer and SpendBudget).
	Outside []OutsideConsumer
	// Clock drives expiry, grace periods, timestamps and rate-limit windows.
	// nil is the real clock. Latency and fault delays always use real time.
	Clock clock.PassiveClock
	// Latency is added to every /client/v4 request.
	Latency time.Duration
	// Faults to inject from the start; see SetFaults.
	Faults Faults
	// Refresh picks how refresh moves expires_at (Cloudflare documents one
	// year but not from when); the zero value means RefreshYearFromExpiry.
	Refresh RefreshMode
	// ResetExpiryOnlyOnDurationChange makes a PUT reset expires_at only when
	// its duration differs from the stored one (by default any PUT carrying
	// a duration resets it).
	ResetExpiryOnlyOnDurationChange bool
	// SecretInUpdateResponse makes a PUT that rotates (by incrementing
	// client_secret_version) return the new client_secret.
	SecretInUpdateResponse bool
	// ZonePageSize, when positive, makes the zone list answer in pages of
	// that size, honouring only the page parameter; zero answers everything
	// on one page.
	ZonePageSize int
	// OmitTotalPages leaves total_pages and total_count out of every list's
	// result_info, so clients must stop on an empty page.
	OmitTotalPages bool
	// Seed makes IDs, secrets and fault draws reproducible; 0 is random.
	Seed int64
	// RequestLogLimit caps RequestLog (oldest entries go first); 0 is
	// 100,000, negative keeps nothing.
	RequestLogLimit int
}

// Server is the simulated API. It is safe for concurrent use.
type Server struct {
	opts     Options
	clock    clock.PassiveClock
	accounts map[string]bool
	zones    map[string]bool
	auth     *authenticator
	limiter  *rateLimiter
	control  *http.ServeMux

	mu     sync.RWMutex // guards st, ids and issued
	st     *store
	ids    idGen
	issued []string

	faultMu   sync.Mutex // guards faults and faultRand
	faults    Faults
	faultRand *rand.Rand

	statsMu sync.Mutex // guards stats and log
	stats   Stats
	log     []Request
}

// New builds a Server. It panics on an unknown Options.Refresh.
func New(opts Options) *Server {
	if !slices.Contains(RefreshModes(), opts.Refresh.orDefault()) {
		panic(fmt.Sprintf("sim: unknown RefreshMode %q", opts.Refresh))
	}
	s := &Server{
		opts:      opts,
		clock:     opts.Clock,
		accounts:  toSet(opts.Accounts),
		zones:     toSet(opts.Zones),
		auth:      newAuthenticator(opts.APITokens, opts.APIKeys),
		limiter:   newRateLimiter(opts.RateLimit, opts.Lockout, opts.Outside),
		st:        newStore(),
		ids:       idGen{newRand(opts.Seed, 1)},
		faults:    opts.Faults.withDefaults(),
		faultRand: newRand(opts.Seed, 2),
		stats:     newStats(),
	}
	if s.clock == nil {
		s.clock = clock.RealClock{}
	}
	if s.opts.RequestLogLimit == 0 {
		s.opts.RequestLogLimit = 100_000
	}
	s.control = s.controlMux()
	return s
}

func toSet(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// now is the clock's time in UTC without a monotonic reading, so stored
// times compare equal to their JSON round trip.
func (s *Server) now() time.Time { return s.clock.Now().UTC().Round(0) }

// ServeHTTP serves /client/v4 (the API) and /_sim (control endpoints).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; p == "/_sim" || strings.HasPrefix(p, "/_sim/") {
		s.control.ServeHTTP(w, r)
		return
	}
	s.serveAPI(w, r)
}

// serveAPI runs one API request: latency, fault draw, then authentication,
// rate limit, routing and the handler. The order puts faults first because
// Cloudflare's edge fails before the API sees a request. Every outcome is
// recorded (stats, log, issued secrets) before the client can observe it, so
// a test that has its answer can trust the oracle at once.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	rt := parseRoute(r.Method, r.URL.Path)
	rec := Request{Time: s.now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Op: rt.op,
		Credential: credentialOf(r.Header)}

	sleep(r.Context(), s.opts.Latency)
	kind, f := s.drawFault(rt.op)
	rec.Fault = kind
	switch kind {
	case FaultLatency:
		sleep(r.Context(), f.LatencySpike)
	case Fault5xx:
		rec.Status = s.fiveXXStatus()
		s.record(rec)
		write5xx(w, rec.Status)
		return
	case Fault429:
		resp := fail(http.StatusTooManyRequests, CodeRateLimited, "Rate limited. Please wait and consider throttling your request speed")
		resp.header.Set("Retry-After", strconv.Itoa(max(ceilSeconds(f.RetryAfter), 1)))
		rec.Status = resp.status
		s.record(rec)
		writeJSON(w, resp)
		return
	case FaultReset:
		s.record(rec) // Status 0: no response
		abortConnection(w, true)
		return
	}

	resp := s.handle(r, rt, &rec)
	rec.CreatedTokenID = resp.created
	if kind == FaultDropResponse {
		// The change is committed; the client never hears of it.
		s.record(rec)
		abortConnection(w, false)
		return
	}
	rec.Status = resp.status
	s.record(rec)
	if resp.secret != "" {
		s.mu.Lock()
		s.issued = append(s.issued, resp.secret)
		s.mu.Unlock()
	}
	writeJSON(w, resp)
}

// handle authenticates, spends the rate budget and dispatches.
func (s *Server) handle(r *http.Request, rt route, rec *Request) response {
	p, failure := s.auth.authenticate(r.Header)
	if failure != nil {
		return *failure
	}
	d := s.limiter.take(p.user, s.clock.Now())
	rec.lockedOut = d.lockedOut // this request, or outside spending before it
	var resp response
	switch {
	case !d.allowed:
		rec.rateLimited = true
		resp = fail(http.StatusTooManyRequests, CodeRateLimited, "Rate limited. Please wait and consider throttling your request speed")
	case rt.err != nil:
		resp = *rt.err
	case rt.zone && !s.zones[rt.scopeID], !rt.zone && !s.accounts[rt.scopeID]:
		resp = unknownScope(rt)
	case p.readOnly && isWrite(rt.op):
		resp = authFailure(http.StatusForbidden)
	default:
		resp = s.dispatch(r, rt)
	}
	s.limiter.setHeaders(resp.header, d)
	return resp
}

func (s *Server) dispatch(r *http.Request, rt route) response {
	var body []byte
	if rt.op == OpCreate || rt.op == OpUpdate || rt.op == OpRotate {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
		if err != nil {
			return invalid("could not read the request body: " + err.Error())
		}
		if len(body) > maxBodyBytes {
			return invalid("request body is larger than 1 MiB")
		}
	}
	switch rt.op {
	case OpList:
		return s.list(rt, r.URL.Query())
	case OpGet:
		return s.get(rt)
	case OpCreate:
		return s.create(rt, body)
	case OpUpdate:
		return s.update(rt, body)
	case OpDelete:
		return s.delete(rt)
	case OpRefresh:
		return s.refresh(rt)
	case OpRotate:
		return s.rotate(rt, body)
	}
	return fail(http.StatusNotFound, CodeNoRoute, "No route for that URI")
}

// SpendBudget charges n requests to a user's current rate-limit window as
// if another client of that user had made them: they show in the headers
// and can lock the user out like any request. During a lockout it does
// nothing (those requests would have been refused). user is a user name as
// in OutsideConsumer.User.
func (s *Server) SpendBudget(user string, n int) {
	if s.limiter.spend(userKey(user), n, s.clock.Now()).lockedOut {
		s.statsMu.Lock()
		s.stats.Lockouts++
		s.statsMu.Unlock()
	}
}

// UserOf returns the user name an API token's budget belongs to: its
// APIToken.User, else the token itself (also in open mode).
func (s *Server) UserOf(apiToken string) string { return s.auth.userOf(apiToken) }

// SetFaults replaces the fault configuration at run time.
func (s *Server) SetFaults(f Faults) {
	s.faultMu.Lock()
	s.faults = f.withDefaults()
	s.faultMu.Unlock()
}

// CurrentFaults returns the fault configuration in force (defaults filled in).
func (s *Server) CurrentFaults() Faults {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := s.faults
	f.Kinds = slices.Clone(f.Kinds)
	f.Ops = slices.Clone(f.Ops)
	return f
}

// Tokens returns every token, secrets included, in creation order.
func (s *Server) Tokens() []TokenState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.all()
}

// Token returns one token by ID, secrets included.
func (s *Server) Token(id string) (TokenState, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.st.byID[id]
	if e == nil {
		return TokenState{}, false
	}
	return e.state, true
}

// Verify reports whether Access would let clientID/clientSecret in now. It
// has no side effects.
func (s *Server) Verify(clientID, clientSecret string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.st.byClientID[clientID]
	return e != nil && e.state.Accepts(clientSecret, s.now())
}

// authenticateAccess is Verify plus what a real Access login does: it stamps
// last_seen_at.
func (s *Server) authenticateAccess(clientID, clientSecret string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.byClientID[clientID]
	now := s.now()
	if e == nil || !e.state.Accepts(clientSecret, now) {
		return false
	}
	e.state.LastSeenAt = now
	return true
}

// IssuedSecrets returns every client_secret the API has put in a response,
// in order (a secret whose response was dropped by a fault is not listed;
// one whose write failed because the client went away is).
// Tests use it to check that no secret leaks into logs, events or status.
func (s *Server) IssuedSecrets() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.issued)
}

// DeleteTokenOutOfBand deletes a token as someone using the dashboard would.
// It reports whether the token existed.
func (s *Server) DeleteTokenOutOfBand(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.byID[id]
	if e == nil {
		return false
	}
	s.st.remove(e)
	return true
}

// UpdateTokenOutOfBand changes a token behind the operator's back (drift).
// mutate gets a copy; ID, AccountID, ZoneID and ClientID cannot change and
// are restored. It reports whether the token existed.
func (s *Server) UpdateTokenOutOfBand(id string, mutate func(*TokenState)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.byID[id]
	if e == nil {
		return false
	}
	t := e.state
	mutate(&t)
	t.ID, t.AccountID, t.ZoneID, t.ClientID = e.state.ID, e.state.AccountID, e.state.ZoneID, e.state.ClientID
	if t.UpdatedAt.Equal(e.state.UpdatedAt) { // as Cloudflare does on any change, unless mutate set it
		t.UpdatedAt = s.now()
	}
	s.st.rename(e, t.Name)
	e.state = t
	return true
}

// RotateTokenOutOfBand rotates a token as someone using the dashboard would,
// revoking its current secret at once (no grace). It reports whether the
// token existed; the new secret is kept by the simulator only.
func (s *Server) RotateTokenOutOfBand(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.byID[id]
	if e == nil {
		return false
	}
	now := s.now()
	s.rotateLocked(&e.state, time.Time{}, now)
	e.state.ClientSecretVersion++
	e.state.UpdatedAt = now
	return true
}
