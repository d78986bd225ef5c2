package controller

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/servicetoken-operator/servicetoken-operator/internal/schedule"
)

// newTestRenewals is a planner on a fake clock set to t0.
func newTestRenewals(t *testing.T) (*WithT, time.Time, *clocktesting.FakePassiveClock, *Renewals) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(t0)
	return NewWithT(t), t0, clk, NewRenewals(clk)
}

func TestRenewalsPlanPullsADenseRunEarlier(t *testing.T) {
	g, t0, clk, p := newTestRenewals(t)
	// Three renewals due at the same second, one call per 10s: the first
	// two must start 20s and 10s early for the last to make its time.
	at := t0.Add(time.Hour)
	for i, name := range []string{"a", "b", "c"} {
		r := schedule.Renewal{At: at, Deadline: at.Add(time.Duration(i+1) * time.Minute), Cost: 1}
		p.Plan("acct", types.NamespacedName{Namespace: "ns", Name: name}, r, 10*time.Second)
	}
	clk.SetTime(t0.Add(time.Second)) // past replanEvery: the next call replans
	got := p.Plan("acct", types.NamespacedName{Namespace: "ns", Name: "a"},
		schedule.Renewal{At: at, Deadline: at.Add(time.Minute), Cost: 1}, 10*time.Second)
	g.Expect(got).To(Equal(at.Add(-20 * time.Second)))
}

// After a renewal, the token registers its next one. Until the account is
// replanned, it must get its new time, not the plan of the renewal it just
// did (which lies in the past and would renew it again at once).
func TestRenewalsChangedEntryNeverGetsAStalePlan(t *testing.T) {
	g, t0, clk, p := newTestRenewals(t)
	owner := types.NamespacedName{Namespace: "ns", Name: "a"}
	first := schedule.Renewal{At: t0.Add(time.Minute), Deadline: t0.Add(2 * time.Minute), Cost: 1}
	g.Expect(p.Plan("acct", owner, first, time.Second)).To(Equal(first.At))

	// Renewed at once (say the plan had pulled it early), within replanEvery
	// of the last replan, as happens while many tokens of the account renew.
	clk.SetTime(t0.Add(100 * time.Millisecond))
	next := schedule.Renewal{At: t0.Add(time.Hour), Deadline: t0.Add(time.Hour + time.Minute), Cost: 1}
	g.Expect(p.Plan("acct", owner, next, time.Second)).To(Equal(next.At))
	clk.SetTime(t0.Add(2 * time.Minute)) // the old plan's time has passed
	g.Expect(p.due()).To(BeEmpty())
	g.Expect(p.Plan("acct", owner, next, time.Second)).To(Equal(next.At))
}

func TestRenewalsWakeInPlanOrder(t *testing.T) {
	g, t0, clk, p := newTestRenewals(t)
	// Ten renewals at the same own time, 100ms of budget each: the plan pulls
	// them into the same few seconds; they must be woken in expiry order.
	at := t0.Add(time.Minute)
	names := []string{"e", "b", "j", "a", "h", "c", "i", "d", "g", "f"}
	for _, n := range names {
		deadline := at.Add(time.Duration(n[0]-'a'+1) * time.Second)
		p.Plan("acct", types.NamespacedName{Namespace: "ns", Name: n}, schedule.Renewal{At: at, Deadline: deadline, Cost: 1}, time.Second)
	}
	clk.SetTime(at) // everything planned before now is due
	var got []string
	for _, o := range p.due() {
		got = append(got, o.Name)
	}
	g.Expect(got).To(Equal([]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}),
		"j keeps its own time and is woken with the others, after them")
	g.Expect(p.due()).To(BeEmpty(), "each planned time wakes its owner once")
}

// A renewal's wake record is dropped once it has registered its next one:
// woken holds only renewals still in progress, not one entry per token.
func TestRenewalsForgetAWakeOnceRenewed(t *testing.T) {
	g, t0, clk, p := newTestRenewals(t)
	owner := types.NamespacedName{Namespace: "ns", Name: "a"}
	p.Plan("acct", owner, schedule.Renewal{At: t0.Add(time.Minute), Deadline: t0.Add(2 * time.Minute), Cost: 1}, time.Second)
	clk.SetTime(t0.Add(time.Minute))
	g.Expect(p.due()).To(ConsistOf(owner))
	g.Expect(p.due()).To(BeEmpty(), "woken once")
	p.Plan("acct", owner, schedule.Renewal{At: t0.Add(time.Hour), Deadline: t0.Add(2 * time.Hour), Cost: 1}, time.Second)
	g.Expect(p.accounts["acct"].woken).To(BeEmpty())
}
