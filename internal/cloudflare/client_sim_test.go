package cloudflare

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/contract"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

const (
	simAccount  = "acc1"
	simZone     = "zone1"
	simWriter   = "sim-writer-token-0123456789"
	simReadOnly = "sim-reader-token-0123456789"
)

// simEnv is the simulator behind the contract validator: every request the
// client sends, and every answer, is checked against the OpenAPI schema.
type simEnv struct {
	sim     *sim.Server
	url     string
	clock   *clocktesting.FakeClock // the simulator's clock (expiry, grace)
	factory Factory
}

func newSimEnv(t *testing.T, tweak ...func(*sim.Options)) *simEnv {
	t.Helper()
	v := contract.Load(t)
	clk := clocktesting.NewFakeClock(testEpoch)
	opts := sim.Options{
		Accounts:  []string{simAccount},
		Zones:     []string{simZone},
		APITokens: []sim.APIToken{{Token: simWriter}, {Token: simReadOnly, ReadOnly: true}},
		RateLimit: sim.RateLimit{Requests: -1},
		Clock:     clk,
		Seed:      7,
	}
	for _, f := range tweak {
		f(&opts)
	}
	s := sim.New(opts)
	srv := httptest.NewServer(v.Wrap(s))
	t.Cleanup(func() {
		srv.Close()
		v.AssertClean(t)
	})
	return &simEnv{sim: s, url: srv.URL + "/client/v4", clock: clk, factory: NewFactory(FactoryOptions{Clock: clk})}
}

func (e *simEnv) client(t *testing.T, token string) Client {
	t.Helper()
	c, err := e.factory.ClientFor(AccountConfig{
		Key: "CloudflareAccount/ns/" + token, BaseURL: e.url, APIToken: token,
		RateLimit: RateLimit{Requests: 1 << 20, Period: time.Second},
	})
	if err != nil {
		t.Fatalf("ClientFor: %v", err)
	}
	return c
}

func TestClientAgainstSimulatorAccountLifecycle(t *testing.T) {
	g := NewWithT(t)
	env := newSimEnv(t)
	c := env.client(t, simWriter)
	ctx := context.Background()
	acct := Scope{AccountID: simAccount}

	// create
	creds, err := c.Create(ctx, acct, TokenSpec{Name: "svc-a", Duration: "24h", Enabled: true})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(creds.ID).NotTo(BeEmpty())
	g.Expect(creds.ClientID).To(HaveSuffix(".access"))
	g.Expect(creds.CreatedAt).To(Equal(testEpoch))
	g.Expect(env.sim.Verify(creds.ClientID, creds.ClientSecret)).To(BeTrue())

	// get
	tok, err := c.Get(ctx, acct, creds.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(creds.Knows(FieldExpiresAt)).To(BeFalse(), "create's response carries no expires_at")
	want := creds.Token // get does
	want.ExpiresAt, want.Missing = testEpoch.Add(24*time.Hour), 0
	g.Expect(tok).To(Equal(want))

	// list: a name filter, and more than one page
	for range 1001 {
		_, err := c.Create(ctx, acct, TokenSpec{Name: "bulk", Enabled: true})
		g.Expect(err).NotTo(HaveOccurred())
	}
	env.sim.ResetStats()
	bulk, err := c.List(ctx, acct, ListOptions{Name: "bulk"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bulk).To(HaveLen(1001))
	g.Expect(env.sim.Stats().ByOp["list"]).To(Equal(2), "two pages of 1000")
	ids := map[string]bool{}
	for _, b := range bulk {
		g.Expect(b.Name).To(Equal("bulk"))
		ids[b.ID] = true
	}
	g.Expect(ids).To(HaveLen(1001))
	one, err := c.List(ctx, acct, ListOptions{Name: "svc-a"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(one).To(HaveLen(1))
	g.Expect(one[0].ID).To(Equal(creds.ID))
	all, err := c.List(ctx, acct, ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(all).To(HaveLen(1002))

	// update (PUT)
	env.clock.Step(time.Hour)
	tok, err = c.Update(ctx, acct, creds.ID, TokenSpec{Name: "svc-b", Duration: "48h", Enabled: true})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Name).To(Equal("svc-b"))
	g.Expect(tok.Duration).To(Equal("48h"))
	g.Expect(tok.UpdatedAt).To(Equal(env.clock.Now()))
	g.Expect(tok.ExpiresAt).To(Equal(env.clock.Now().Add(48 * time.Hour)))

	// refresh extends the expiry, the secret stays
	refreshed, err := c.Refresh(ctx, simAccount, creds.ID)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(refreshed.ExpiresAt).To(BeTemporally(">", tok.ExpiresAt))
	g.Expect(env.sim.Verify(creds.ClientID, creds.ClientSecret)).To(BeTrue())

	// rotate with a grace period: both secrets work until it ends
	rotated, err := c.Rotate(ctx, simAccount, creds.ID, env.clock.Now().Add(time.Hour))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(rotated.ID).To(Equal(creds.ID))
	g.Expect(rotated.ClientSecret).NotTo(Equal(creds.ClientSecret))
	g.Expect(env.sim.Verify(creds.ClientID, rotated.ClientSecret)).To(BeTrue())
	g.Expect(env.sim.Verify(creds.ClientID, creds.ClientSecret)).To(BeTrue(), "old secret within grace")
	env.clock.Step(time.Hour + time.Second)
	g.Expect(env.sim.Verify(creds.ClientID, creds.ClientSecret)).To(BeFalse(), "old secret after grace")
	g.Expect(env.sim.Verify(creds.ClientID, rotated.ClientSecret)).To(BeTrue())

	// rotate without grace revokes the old secret at once
	again, err := c.Rotate(ctx, simAccount, creds.ID, time.Time{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.sim.Verify(creds.ClientID, rotated.ClientSecret)).To(BeFalse())
	g.Expect(env.sim.Verify(creds.ClientID, again.ClientSecret)).To(BeTrue())

	// delete, then it is gone
	g.Expect(c.Delete(ctx, acct, creds.ID)).To(Succeed())
	_, err = c.Get(ctx, acct, creds.ID)
	g.Expect(IsNotFound(err)).To(BeTrue(), "%v", err)
	g.Expect(err.(*Error).HTTPStatus).To(Equal(404))
	g.Expect(IsNotFound(c.Delete(ctx, acct, creds.ID))).To(BeTrue())
	g.Expect(env.sim.Verify(creds.ClientID, again.ClientSecret)).To(BeFalse())
}

func TestClientAgainstSimulatorZoneScope(t *testing.T) {
	g := NewWithT(t)
	env := newSimEnv(t)
	c := env.client(t, simWriter)
	ctx := context.Background()
	zone := Scope{ZoneID: simZone}

	creds, err := c.Create(ctx, zone, TokenSpec{Name: "zone-svc", Duration: "forever", Enabled: true})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.sim.Verify(creds.ClientID, creds.ClientSecret)).To(BeTrue())
	_, err = c.Create(ctx, zone, TokenSpec{Name: "other", Enabled: true})
	g.Expect(err).NotTo(HaveOccurred())

	tok, err := c.Update(ctx, zone, creds.ID, TokenSpec{Name: "zone-svc", Duration: "forever", Enabled: false})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Enabled).To(BeFalse())
	g.Expect(tok.ExpiresAt.IsZero()).To(BeTrue(), "a forever token has no expiry")
	g.Expect(env.sim.Verify(creds.ClientID, creds.ClientSecret)).To(BeFalse(), "disabled")

	listed, err := c.List(ctx, zone, ListOptions{Name: "zone-svc"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(listed).To(HaveLen(1))
	g.Expect(listed[0].ID).To(Equal(creds.ID))

	g.Expect(c.Delete(ctx, zone, creds.ID)).To(Succeed())
	_, err = c.Get(ctx, zone, creds.ID)
	g.Expect(IsNotFound(err)).To(BeTrue())
	// The token lived in the zone, not the account.
	_, err = c.Get(ctx, Scope{AccountID: simAccount}, creds.ID)
	g.Expect(IsNotFound(err)).To(BeTrue())
}

func TestClientAgainstSimulatorAuthErrors(t *testing.T) {
	g := NewWithT(t)
	env := newSimEnv(t)
	ctx := context.Background()

	_, err := env.client(t, "wrong-token").Get(ctx, Scope{AccountID: simAccount}, testTokenID)
	g.Expect(KindOf(err)).To(Equal(KindAuth))
	g.Expect(err.(*Error).HTTPStatus).To(Equal(401))
	g.Expect(err.(*Error).Codes).To(Equal([]int{10000}))
	g.Expect(err.Error()).NotTo(ContainSubstring("wrong-token"))

	_, err = env.client(t, simReadOnly).Create(ctx, Scope{AccountID: simAccount}, TokenSpec{Name: "x", Enabled: true})
	g.Expect(KindOf(err)).To(Equal(KindAuth))
	g.Expect(err.(*Error).HTTPStatus).To(Equal(403))
	g.Expect(env.sim.Tokens()).To(BeEmpty())
}

// Faults the simulator injects come back classified; a dropped create
// response is OutcomeUnknown although the token exists.
func TestClientAgainstSimulatorFaults(t *testing.T) {
	g := NewWithT(t)
	env := newSimEnv(t)
	c := env.client(t, simWriter)
	ctx := context.Background()
	acct := Scope{AccountID: simAccount}

	env.sim.SetFaults(sim.Faults{Rate: 1, Kinds: []sim.FaultKind{sim.FaultDropResponse}})
	_, err := c.Create(ctx, acct, TokenSpec{Name: "lost", Enabled: true})
	g.Expect(KindOf(err)).To(Equal(KindOutcomeUnknown), "%v", err)
	g.Expect(env.sim.Tokens()).To(HaveLen(1), "the create happened")

	env.sim.SetFaults(sim.Faults{Rate: 1, Kinds: []sim.FaultKind{sim.Fault5xx}})
	_, err = c.Create(ctx, acct, TokenSpec{Name: "x", Enabled: true})
	g.Expect(KindOf(err)).To(Equal(KindOutcomeUnknown))
	_, err = c.List(ctx, acct, ListOptions{})
	g.Expect(KindOf(err)).To(Equal(KindTransient))
	g.Expect(err.(*Error).HTTPStatus).To(BeNumerically(">=", 500))

	env.sim.SetFaults(sim.Faults{})
	found, err := c.List(ctx, acct, ListOptions{Name: "lost"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(found).To(HaveLen(1), "observing finds what the lost create made")
}

// The client reads the simulator's Ratelimit header and stops short of the
// budget: Cloudflare's lockout never happens, and calls resume when the
// window resets.
func TestClientAgainstSimulatorStopsBeforeTheBudget(t *testing.T) {
	g := NewWithT(t)
	env := newSimEnv(t, func(o *sim.Options) { o.RateLimit = sim.RateLimit{Requests: 20, Period: time.Minute} })
	env.factory = NewFactory(FactoryOptions{Clock: env.clock, MaxWait: time.Nanosecond}) // never sleeps on the fake clock
	c := env.client(t, simWriter)
	ctx := context.Background()
	acct := Scope{AccountID: simAccount}

	// Call as fast as the limiter admits for three windows: it paces what
	// the header says is left over the rest of each window.
	start := env.clock.Now()
	for env.clock.Now().Before(start.Add(3 * time.Minute)) {
		_, err := c.List(ctx, acct, ListOptions{})
		if err != nil {
			g.Expect(KindOf(err)).To(Equal(KindRateLimited))
			env.clock.Step(RetryAfterOf(err))
		}
	}
	st := env.sim.Stats()
	g.Expect(st.RateLimited).To(BeZero(), "never a 429 from the budget")
	g.Expect(st.Requests).To(BeNumerically(">=", 3*(20-reserveOf(20))-3), "spends nearly all but the reserve")

	// In a fresh window someone else spends nearly everything: the client
	// holds until the window resets.
	env.clock.Step(time.Minute + time.Second)
	env.sim.SpendBudget(env.sim.UserOf(simWriter), 20-reserveOf(20)-1)
	_, _ = c.List(ctx, acct, ListOptions{}) // sees the header
	_, err := c.List(ctx, acct, ListOptions{})
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	g.Expect(err).To(MatchError(ContainSubstring("Ratelimit header")))
	g.Expect(RetryAfterOf(err)).To(BeNumerically("<=", time.Minute))
	g.Expect(env.sim.Stats().Lockouts).To(BeZero())
	env.clock.Step(RetryAfterOf(err))
	_, err = c.Create(ctx, acct, TokenSpec{Name: "x", Enabled: true})
	g.Expect(err).NotTo(HaveOccurred())
}

// A 429 (here injected) pauses the credentials: the next call is refused
// without reaching the server, until Retry-After has passed.
func TestClientAgainstSimulator429Pauses(t *testing.T) {
	g := NewWithT(t)
	env := newSimEnv(t)
	c := env.client(t, simWriter)
	ctx := context.Background()
	acct := Scope{AccountID: simAccount}

	env.sim.SetFaults(sim.Faults{Rate: 1, Kinds: []sim.FaultKind{sim.Fault429}, RetryAfter: 30 * time.Second})
	_, err := c.List(ctx, acct, ListOptions{})
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	g.Expect(RetryAfterOf(err)).To(Equal(30 * time.Second))
	env.sim.SetFaults(sim.Faults{})

	_, err = c.Create(ctx, acct, TokenSpec{Name: "x", Enabled: true})
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	g.Expect(env.sim.Stats().Requests).To(Equal(1), "refused locally during the pause")

	env.clock.Step(30 * time.Second)
	_, err = c.Create(ctx, acct, TokenSpec{Name: "x", Enabled: true})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.sim.Stats().Requests).To(Equal(2))
}

// Two API tokens of one Cloudflare user (separate budgets on our side, one
// at Cloudflare's) next to an outside consumer spending 40% of the user's
// budget: the Ratelimit headers steer both, so the user is never locked out,
// and the operator still gets most of what is left.
func TestClientsOfOneUserShareCloudflaresBudgetWithoutLockout(t *testing.T) {
	for _, tc := range []struct {
		quota, windows int
		window         time.Duration
	}{{1200, 3, 5 * time.Minute}, {120, 30, 10 * time.Second}} {
		t.Run(fmt.Sprintf("%d per %s", tc.quota, tc.window), func(t *testing.T) { oneUser(t, tc.quota, tc.windows, tc.window) })
	}
}

func oneUser(t *testing.T, quota, windows int, window time.Duration) {
	g := NewWithT(t)
	const outside = 0.4
	env := newSimEnv(t, func(o *sim.Options) {
		o.APITokens = []sim.APIToken{{Token: "ops-token-a", User: "ops"}, {Token: "ops-token-b", User: "ops"}}
		o.RateLimit = sim.RateLimit{Requests: quota, Period: window}
		o.Outside = []sim.OutsideConsumer{{User: "ops", Fraction: outside}}
	})
	// A limiter that never sleeps: the fake clock only moves in this loop.
	env.factory = NewFactory(FactoryOptions{Clock: env.clock, MaxWait: time.Nanosecond})
	clients := []Client{env.client(t, "ops-token-a"), env.client(t, "ops-token-b")}
	ctx := context.Background()
	ours := 0
	for end := env.clock.Now().Add(time.Duration(windows) * window); env.clock.Now().Before(end); env.clock.Step(100 * time.Millisecond) {
		for _, c := range clients {
			for {
				if _, err := c.List(ctx, Scope{AccountID: simAccount}, ListOptions{}); err != nil {
					g.Expect(KindOf(err)).To(Equal(KindRateLimited), err.Error())
					break
				}
				ours++
			}
		}
	}
	st := env.sim.Stats()
	g.Expect(st.Lockouts).To(BeZero())
	g.Expect(st.RateLimited).To(BeZero(), "no 429 from the budget")
	left := (1 - outside) * float64(quota*windows)
	t.Logf("operator calls: %d of the %.0f left by the outside consumer (simulator saw %d)", ours, left, st.Requests)
	g.Expect(float64(ours)).To(BeNumerically(">=", 0.85*left), "%d calls of the %.0f left to the operator", ours, left)
}
