package controller

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

// After any renewal a token expires within a minute of now + spec.duration,
// whatever Cloudflare's refresh does: each plausible reading of it (a year or
// the token's duration, from now or from the old expiry) is played by the
// simulator. Only when a PUT of the duration does not reset the expiry either
// (a reading against Cloudflare's docs) can the lifetime be wider than asked,
// and then an event says so; a zone token, which has no refresh, gets an
// error to retry rather than a renewal that did nothing.
func TestRenewalGivesTheLifetimeTheSpecAsksFor(t *testing.T) {
	const account, zone = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
	for _, mode := range sim.RefreshModes() {
		for _, putResetsOnlyOnChange := range []bool{false, true} {
			for _, duration := range []string{"720h", "8760h"} {
				for _, zoned := range []bool{false, true} {
					name := string(mode) + "/" + duration
					if putResetsOnlyOnChange {
						name += "/put-resets-only-on-change"
					}
					if zoned {
						name += "/zone"
					}
					t.Run(name, func(t *testing.T) {
						g := NewWithT(t)
						clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
						srv := httptest.NewServer(sim.New(sim.Options{Accounts: []string{account}, Zones: []string{zone},
							RateLimit: sim.RateLimit{Requests: -1}, Clock: clk, Refresh: mode,
							ResetExpiryOnlyOnDurationChange: putResetsOnlyOnChange, Seed: 1}))
						defer srv.Close()
						c, err := cf.NewFactory(cf.FactoryOptions{Clock: clk}).ClientFor(cf.AccountConfig{
							Key: "k", BaseURL: srv.URL + "/client/v4", APIToken: "token"})
						g.Expect(err).NotTo(HaveOccurred())
						where := cf.Scope{AccountID: account}
						if zoned {
							where = cf.Scope{ZoneID: zone}
						}
						st := &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "st"},
							Spec: v1alpha1.ServiceTokenSpec{Duration: duration}}
						eff, err := st.Effective()
						g.Expect(err).NotTo(HaveOccurred())
						creds, err := c.Create(context.Background(), where, cf.TokenSpec{Name: eff.TokenName, Duration: duration, Enabled: true})
						g.Expect(err).NotTo(HaveOccurred())
						tok, err := c.Get(context.Background(), where, creds.ID)
						g.Expect(err).NotTo(HaveOccurred())

						clk.Step(eff.DurationValue - eff.RenewBefore) // the renewal window opens
						events := &eventLog{}
						r := &ServiceTokenReconciler{Recorder: events}
						s := &scope{st: st, now: clk.Now(), eff: eff, token: &tok,
							acct: &resolved{Client: c, Scope: where, Shared: "k"}}
						want := clk.Now().Add(eff.DurationValue)

						got, err := r.renewLifetime(context.Background(), s)
						// Where the refresh alone lands on now+duration, the PUT's reset is not needed.
						refreshExact := (duration == "8760h" && (mode == sim.RefreshYearFromNow || mode == sim.RefreshDurationFromNow)) ||
							(duration == "720h" && mode == sim.RefreshDurationFromNow)
						inexact := putResetsOnlyOnChange && !refreshExact
						switch {
						case putResetsOnlyOnChange && zoned:
							g.Expect(err).To(MatchError(ContainSubstring("renewal did not move the expiry")))
							return
						case inexact:
							g.Expect(err).NotTo(HaveOccurred())
							g.Expect(got.ExpiresAt).To(BeTemporally(">", want.Add(time.Minute)))
							g.Expect(events.reasons(st)).To(ConsistOf("RenewalInexact"))
						default:
							g.Expect(err).NotTo(HaveOccurred())
							g.Expect(got.ExpiresAt).To(BeTemporally("~", want, time.Minute))
							g.Expect(events.reasons(st)).To(BeEmpty())
						}
						real, err := c.Get(context.Background(), where, creds.ID)
						g.Expect(err).NotTo(HaveOccurred())
						g.Expect(got.ExpiresAt).To(Equal(real.ExpiresAt), "the recorded expiry is Cloudflare's")
					})
				}
			}
		}
	}
}
