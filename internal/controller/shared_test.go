package controller

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"

	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

// Account objects on the same credentials share one budget and one token
// inventory: K namespaced accounts naming one Cloudflare account list it once
// per drift period, not K times, and hold one copy. Other credentials (which
// may see other tokens) share nothing.
func TestAccountsOnOneCredentialShareTheInventory(t *testing.T) {
	g := NewWithT(t)
	const account = "0123456789abcdef0123456789abcdef"
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	s := sim.New(sim.Options{Accounts: []string{account}, RateLimit: sim.RateLimit{Requests: -1}, Clock: clk, Seed: 1})
	srv := httptest.NewServer(s)
	defer srv.Close()
	accounts := &Accounts{Factory: cf.NewFactory(cf.FactoryOptions{Clock: clk})}
	inv := NewInventory(clk)
	where := cf.Scope{AccountID: account}

	lookup := func(key, token string) (string, View) {
		c, err := accounts.Factory.ClientFor(cf.AccountConfig{Key: key, BaseURL: srv.URL + "/client/v4", APIToken: token})
		g.Expect(err).NotTo(HaveOccurred())
		shared := accounts.sharedKey(key)
		v, err := inv.Lookup(context.Background(), c, shared, where, clk.Now().Add(-time.Minute))
		g.Expect(err).NotTo(HaveOccurred())
		return shared, v
	}
	a, _ := lookup("CloudflareAccount/team-a/cf", "same-token")
	b, _ := lookup("CloudflareAccount/team-b/cf", "same-token")
	g.Expect(b).To(Equal(a))
	g.Expect(a).NotTo(ContainSubstring("same-token"))
	g.Expect(s.Stats().ByOp[sim.OpList]).To(Equal(1), "one list for both account objects")
	g.Expect(inv.snapshots).To(HaveLen(1), "one copy in memory")

	other, _ := lookup("CloudflareAccount/team-c/cf", "other-token")
	g.Expect(other).NotTo(Equal(a))
	g.Expect(s.Stats().ByOp[sim.OpList]).To(Equal(2))
	g.Expect(accounts.Factory.(cf.LimiterSource).Limiter("CloudflareAccount/team-b/cf")).
		To(BeIdenticalTo(accounts.Factory.(cf.LimiterSource).Limiter("CloudflareAccount/team-a/cf")), "one budget")
}
