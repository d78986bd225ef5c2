// Command cfsim serves the Cloudflare Access service-token API simulator
// (internal/cloudflare/sim) over HTTP, for demos, end-to-end tests and
// benchmarks that run the operator against it as a separate process.
//
//	cfsim --accounts acc1 --zones zone1 --api-tokens 'writer@ops,reader@ops:read' --fault-rate 0.05
//
// The API is at http://<listen>/client/v4; the unauthenticated control
// endpoints (tokens, verify, stats, faults) are under /_sim (see the sim
// package). cfsim never logs a client secret, an API token or an API key.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
	"github.com/servicetoken-operator/servicetoken-operator/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "cfsim:", err)
		os.Exit(2)
	}
}

// config is what the flags say.
type config struct {
	listen  string
	version bool // print the version and exit
	opts    sim.Options
}

func parseFlags(args []string, output io.Writer) (config, error) {
	fs := flag.NewFlagSet("cfsim", flag.ContinueOnError)
	fs.SetOutput(output)
	var (
		c           config
		accounts    = fs.String("accounts", "", "comma-separated account IDs the API knows")
		zones       = fs.String("zones", "", "comma-separated zone IDs the API knows")
		apiTokens   = fs.String("api-tokens", "", "comma-separated API tokens as token[@user][:read]: @user names the Cloudflare user whose rate budget the token shares (default: the token is its own user), :read makes it read-only (none and no --api-keys: any well-formed credential is accepted)")
		apiKeys     = fs.String("api-keys", "", "comma-separated legacy email:key pairs (alphanumeric keys); a key shares the budget of tokens whose @user is its email")
		rateLimit   = fs.String("rate-limit", "1200/5m", "per-user budget as requests/period; 0 or none for unlimited")
		outside     = fs.String("outside-fraction", "", "comma-separated [user=]fraction: other clients spend that fraction (0..1) of a user's budget evenly over every window; without user=, of every user's")
		refreshMode = fs.String("refresh-mode", string(sim.RefreshYearFromExpiry), "how refresh moves expires_at: "+strings.Join(refreshModeNames(), "|")+" (Cloudflare documents one year, not from when)")
		faultKind   = fs.String("fault-kinds", "", "comma-separated fault kinds (5xx, 429, reset, latency, drop-response); empty for all")
	)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8787", "address to listen on")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.DurationVar(&c.opts.Latency, "latency", 0, "latency added to every API request")
	fs.DurationVar(&c.opts.Lockout, "lockout", sim.DefaultLockout, "how long a user over the budget gets only 429s, from the request that exceeded it")
	fs.IntVar(&c.opts.ZonePageSize, "zone-page-size", 0, "answer the zone list in pages of this size, honouring only page (0: everything on one page)")
	fs.BoolVar(&c.opts.OmitTotalPages, "omit-total-pages", false, "leave total_pages and total_count out of every list's result_info")
	fs.Float64Var(&c.opts.Faults.Rate, "fault-rate", 0, "probability (0..1) that an API request gets a fault")
	fs.DurationVar(&c.opts.Faults.LatencySpike, "latency-spike", 0, "delay of the latency fault (default 2s)")
	fs.Int64Var(&c.opts.Seed, "seed", 0, "seed for IDs, secrets and faults (0: random)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	c.opts.Accounts = splitList(*accounts)
	c.opts.Zones = splitList(*zones)
	for _, t := range splitList(*apiTokens) {
		// Errors never quote the item: it holds a token.
		t, readOnly := strings.CutSuffix(t, ":read")
		t = strings.TrimSuffix(t, ":write")
		token, user, hasUser := strings.Cut(t, "@")
		if !wellFormedToken(token) || (hasUser && user == "") {
			return c, errors.New("--api-tokens: want token[@user][:read] with a token of letters, digits and -._~+/=")
		}
		c.opts.APITokens = append(c.opts.APITokens, sim.APIToken{Token: token, ReadOnly: readOnly, User: user})
	}
	for _, pair := range splitList(*apiKeys) {
		email, key, ok := strings.Cut(pair, ":")
		if !ok || !strings.Contains(email, "@") || key == "" || strings.IndexFunc(key, notAlnum) >= 0 {
			// Do not echo the pair: it holds a key.
			return c, errors.New("--api-keys: want comma-separated email:key pairs with alphanumeric keys")
		}
		c.opts.APIKeys = append(c.opts.APIKeys, sim.APIKey{Email: email, Key: key})
	}
	consumers, err := parseOutside(*outside)
	if err != nil {
		return c, fmt.Errorf("--outside-fraction: %w", err)
	}
	c.opts.Outside = consumers
	mode := sim.RefreshMode(*refreshMode)
	if !slices.Contains(sim.RefreshModes(), mode) {
		return c, fmt.Errorf("--refresh-mode %q: want one of %s", *refreshMode, strings.Join(refreshModeNames(), ", "))
	}
	c.opts.Refresh = mode
	if c.opts.Lockout <= 0 {
		return c, fmt.Errorf("--lockout %s: want a positive duration", c.opts.Lockout)
	}
	if c.opts.ZonePageSize < 0 {
		return c, fmt.Errorf("--zone-page-size %d: want 0 or more", c.opts.ZonePageSize)
	}
	rl, err := parseRateLimit(*rateLimit)
	if err != nil {
		return c, fmt.Errorf("--rate-limit: %w", err)
	}
	c.opts.RateLimit = rl
	if r := c.opts.Faults.Rate; r < 0 || r > 1 {
		return c, fmt.Errorf("--fault-rate %v is outside 0..1", r)
	}
	for _, k := range splitList(*faultKind) {
		kind, err := sim.ParseFaultKind(k)
		if err != nil {
			return c, fmt.Errorf("--fault-kinds: %w", err)
		}
		c.opts.Faults.Kinds = append(c.opts.Faults.Kinds, kind)
	}
	return c, nil
}

func refreshModeNames() []string {
	var names []string
	for _, m := range sim.RefreshModes() {
		names = append(names, string(m))
	}
	return names
}

// wellFormedToken is the simulator's rule for a Bearer token; a configured
// token outside it could never authenticate.
func wellFormedToken(token string) bool {
	return token != "" && strings.IndexFunc(token, func(r rune) bool { return notAlnum(r) && !strings.ContainsRune("-._~+/=", r) }) < 0
}

func notAlnum(r rune) bool {
	return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9')
}

// parseOutside reads "0.25" (every user) or "ops@example.com=0.5,…".
// Errors name the position, not the item: a user name may be a token.
func parseOutside(s string) ([]sim.OutsideConsumer, error) {
	var out []sim.OutsideConsumer
	for i, item := range splitList(s) {
		user := ""
		if u, f, ok := strings.Cut(item, "="); ok {
			user, item = strings.TrimSpace(u), strings.TrimSpace(f)
			if user == "" {
				return nil, fmt.Errorf("item %d: empty user before =", i+1)
			}
		}
		f, err := strconv.ParseFloat(item, 64)
		if err != nil || f < 0 || f > 1 {
			return nil, fmt.Errorf("item %d: want [user=]fraction with a fraction from 0 to 1", i+1)
		}
		out = append(out, sim.OutsideConsumer{User: user, Fraction: f})
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parseRateLimit reads "1200/5m"; "0" and "none" mean unlimited.
func parseRateLimit(s string) (sim.RateLimit, error) {
	s = strings.TrimSpace(s)
	if s == "0" || strings.EqualFold(s, "none") {
		return sim.RateLimit{Requests: -1}, nil
	}
	n, period, ok := strings.Cut(s, "/")
	if !ok {
		return sim.RateLimit{}, fmt.Errorf("want requests/period such as 1200/5m, or none; got %q", s)
	}
	requests, err := strconv.Atoi(n)
	if err != nil || requests < 0 {
		return sim.RateLimit{}, fmt.Errorf("bad request count %q", n)
	}
	d, err := time.ParseDuration(period)
	if err != nil || d <= 0 {
		return sim.RateLimit{}, fmt.Errorf("bad period %q", period)
	}
	if requests == 0 {
		return sim.RateLimit{Requests: -1}, nil
	}
	return sim.RateLimit{Requests: requests, Period: d}, nil
}

// describe summarises the configuration for the start line: counts, never
// the credentials themselves.
func describe(c config, url string) string {
	auth := fmt.Sprintf("%d API token(s), %d API key(s)", len(c.opts.APITokens), len(c.opts.APIKeys))
	if len(c.opts.APITokens) == 0 && len(c.opts.APIKeys) == 0 {
		auth = "any credential accepted"
	}
	rl := "unlimited"
	if !c.opts.RateLimit.Unlimited() {
		rl = fmt.Sprintf("%d/%s per user, lockout %s, %d outside consumer(s)",
			c.opts.RateLimit.Requests, c.opts.RateLimit.Period, c.opts.Lockout, len(c.opts.Outside))
	}
	kinds := "all"
	if len(c.opts.Faults.Kinds) > 0 {
		ks := make([]string, len(c.opts.Faults.Kinds))
		for i, k := range c.opts.Faults.Kinds {
			ks[i] = string(k)
		}
		kinds = strings.Join(ks, ",")
	}
	return fmt.Sprintf("cfsim: serving %s%s (accounts [%s], zones [%s]; auth: %s; rate limit %s; refresh %s; latency %s; faults %.3g of %s; control at %s/_sim)",
		url, sim.APIPrefix, strings.Join(c.opts.Accounts, ","), strings.Join(c.opts.Zones, ","),
		auth, rl, c.opts.Refresh, c.opts.Latency, c.opts.Faults.Rate, kinds, url)
}

// run serves until ctx ends, then shuts down gracefully; with --version it
// prints the version to stdout instead. ready, if not nil, receives the base
// URL once listening (for tests).
func run(ctx context.Context, args []string, stdout, logOut io.Writer, ready chan<- string) error {
	c, err := parseFlags(args, logOut)
	if err != nil {
		return err
	}
	if c.version {
		_, err := fmt.Fprintln(stdout, version.Get().Line("cfsim"))
		return err
	}
	logger := log.New(logOut, "", log.LstdFlags)
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	url := "http://" + ln.Addr().String()
	srv := &http.Server{
		Handler:           sim.New(c.opts),
		ReadHeaderTimeout: 10 * time.Second,
		// net/http's own messages (TLS handshakes, bad requests) never hold a
		// credential, but keep them in the same place as the start line.
		ErrorLog: logger,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Print(describe(c, url))
	if ready != nil {
		ready <- url
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	logger.Print("cfsim: stopped")
	return nil
}
