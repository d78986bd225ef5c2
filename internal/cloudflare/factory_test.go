package cloudflare

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestFactoryCachesAndRebuilds(t *testing.T) {
	g := NewWithT(t)
	srv, seen := recordingServer(t, func(*http.Request) (int, string) { return 200, success(`[]`) })
	clk := clocktesting.NewFakeClock(testEpoch)
	f := NewFactory(FactoryOptions{Clock: clk})
	lims := f.(LimiterSource)
	budget := RateLimit{Requests: 100, Period: time.Minute}
	cfg := AccountConfig{Key: "CloudflareAccount/ns/a", BaseURL: srv.URL + "/client/v4", APIToken: "token-one", RateLimit: budget}
	list := func(c Client) {
		_, err := c.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
	}

	c1, err := f.ClientFor(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	same, _ := f.ClientFor(cfg)
	g.Expect(same).To(BeIdenticalTo(c1), "cached")
	lim := lims.Limiter(cfg.Key)
	g.Expect(lim).NotTo(BeNil())
	g.Expect(lim.Budget()).To(Equal(budget))

	// New credentials: new client sending them, same limiter (with its state).
	lim.Pause(time.Minute)
	cfg.APIToken = "token-two"
	c2, _ := f.ClientFor(cfg)
	g.Expect(c2).NotTo(BeIdenticalTo(c1))
	g.Expect(lims.Limiter(cfg.Key)).To(BeIdenticalTo(lim))
	_, err = c2.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{})
	g.Expect(KindOf(err)).To(Equal(KindRateLimited), "the 429 pause survives the rebuild")
	g.Expect(seen()).To(BeEmpty())
	clk.Step(time.Minute)
	list(c2)
	g.Expect(seen()[0].header.Get("Authorization")).To(Equal("Bearer token-two"))

	// New base URL: rebuilt too.
	cfg.BaseURL = srv.URL + "/client/v4/"
	c3, _ := f.ClientFor(cfg)
	g.Expect(c3).NotTo(BeIdenticalTo(c2))
	g.Expect(lims.Limiter(cfg.Key)).To(BeIdenticalTo(lim))

	// New budget: the same limiter, with the new budget.
	cfg.RateLimit = RateLimit{Requests: 10, Period: time.Minute}
	c4, _ := f.ClientFor(cfg)
	g.Expect(c4).NotTo(BeIdenticalTo(c3))
	g.Expect(lims.Limiter(cfg.Key)).To(BeIdenticalTo(lim))
	g.Expect(lims.Limiter(cfg.Key).Budget()).To(Equal(cfg.RateLimit))

	// Another account object on the same credentials shares the limiter
	// (Cloudflare budgets per user), and the tighter budget wins.
	other := cfg
	other.Key = "CloudflareAccount/ns/b"
	other.RateLimit = RateLimit{Requests: 5, Period: time.Minute}
	c5, _ := f.ClientFor(other)
	g.Expect(c5).NotTo(BeIdenticalTo(c4))
	g.Expect(lims.Limiter(other.Key)).To(BeIdenticalTo(lims.Limiter(cfg.Key)))
	g.Expect(lims.Limiter(cfg.Key).Budget()).To(Equal(other.RateLimit))
	g.Expect(lims.CredentialsKey(other.Key)).To(Equal(lims.CredentialsKey(cfg.Key)))

	// Other credentials share nothing.
	third := cfg
	third.Key, third.APIToken = "CloudflareAccount/ns/c", "token-three"
	_, _ = f.ClientFor(third)
	g.Expect(lims.Limiter(third.Key)).NotTo(BeIdenticalTo(lims.Limiter(cfg.Key)))
	g.Expect(lims.CredentialsKey(third.Key)).NotTo(Equal(lims.CredentialsKey(cfg.Key)))
	f.Forget(other.Key)
	g.Expect(lims.Limiter(cfg.Key).Budget()).To(Equal(cfg.RateLimit), "the budget loosens when the tighter account goes")

	// Forget drops client and limiter.
	f.Forget(cfg.Key)
	g.Expect(lims.Limiter(cfg.Key)).To(BeNil())
	c6, _ := f.ClientFor(cfg)
	g.Expect(c6).NotTo(BeIdenticalTo(c4))
}

// The limiter is shared by every client of one account key.
func TestFactoryLimiterSharedAcrossCallers(t *testing.T) {
	g := NewWithT(t)
	srv, seen := recordingServer(t, func(*http.Request) (int, string) { return 200, success(`[]`) })
	f := NewFactory(FactoryOptions{MaxWait: time.Millisecond})
	// burst 1, then one per minute
	cfg := AccountConfig{Key: "k", BaseURL: srv.URL + "/client/v4", APIToken: "t", RateLimit: RateLimit{Requests: 2, Period: time.Minute}}
	a, _ := f.ClientFor(cfg)
	cfg.APIToken = "t2" // a rebuilt client, as after a secret change
	b, _ := f.ClientFor(cfg)

	_, err := a.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = b.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{})
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	g.Expect(RetryAfterOf(err)).To(BeNumerically(">", 50*time.Second))
	g.Expect(seen()).To(HaveLen(1))
}

func TestFactoryRejectsBadConfigWithoutLeakingCredentials(t *testing.T) {
	const secret = "very-secret-credential-42"
	for i, cfg := range []AccountConfig{
		{BaseURL: DefaultBaseURL, APIToken: secret}, // no key
		{Key: "k"}, // no credentials
		{Key: "k", APIToken: secret, APIKey: secret, Email: "a@b.c"},                  // both schemes
		{Key: "k", APIKey: secret},                                                    // key without email
		{Key: "k", BaseURL: "ftp://example.com", APIToken: secret},                    // scheme
		{Key: "k", BaseURL: "https://user:" + secret + "@example.com", APIToken: "x"}, // user info
		{Key: "k", APIToken: secret + "\r\nX-Evil: 1"},                                // header injection
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			g := NewWithT(t)
			c, err := NewFactory(FactoryOptions{}).ClientFor(cfg)
			g.Expect(c).To(BeNil())
			g.Expect(KindOf(err)).To(Equal(KindInvalid))
			g.Expect(err.Error()).NotTo(ContainSubstring(secret))
		})
	}
}

func TestFactoryKeepsNoSecretInCache(t *testing.T) {
	g := NewWithT(t)
	f := NewFactory(FactoryOptions{}).(*factory)
	const secret = "cache-secret-token-99"
	_, err := f.ClientFor(AccountConfig{Key: "k", APIToken: secret})
	g.Expect(err).NotTo(HaveOccurred())
	e := f.entries["k"]
	g.Expect(e.hash).NotTo(ContainSubstring(secret))
	g.Expect(strings.ToLower(e.hash)).To(MatchRegexp(`^[0-9a-f]{64}$`))
	for key := range f.entries {
		g.Expect(key).NotTo(ContainSubstring(secret))
	}
}
