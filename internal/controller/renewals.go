package controller

import (
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/schedule"
)

// renewalBudgetShare is the part of an account's budget renewals are planned
// to use; the rest stays for creates, lists and other tools of the same user.
const renewalBudgetShare = 0.8

// replanEvery bounds how often one account's plan is recomputed while its
// renewals change (e.g. during a restart, when every object registers).
const replanEvery = 500 * time.Millisecond

// Renewals plans each account's renewals as a whole against its budget
// (schedule.PlanRenewals): when many tokens come due together, the run starts
// early enough, in order, that the budget covers every one of them
// before it expires. Each ServiceToken registers its own renewal time and
// gets back its place in the plan; a waker wakes each object when its planned
// start comes, in plan order (its own requeue is only the fallback).
type Renewals struct {
	clock clock.PassiveClock

	mu       sync.Mutex
	accounts map[string]*renewalPlan
	where    map[types.NamespacedName]string // owner -> account key
}

type renewalPlan struct {
	interval time.Duration // one planned call per interval
	entries  map[types.NamespacedName]schedule.Renewal
	planned  map[string]time.Time // by Renewal.Key
	woken    map[types.NamespacedName]time.Time
	dirty    bool
	at       time.Time // when planned was computed
}

// NewRenewals returns an empty planner.
func NewRenewals(clk clock.PassiveClock) *Renewals {
	return &Renewals{clock: clk, accounts: map[string]*renewalPlan{}, where: map[types.NamespacedName]string{}}
}

// renewalInterval is the time one planned call takes of an account's budget
// (requests per period, at renewalBudgetShare).
func renewalInterval(settings v1alpha1.AccountSettings) time.Duration {
	n, period := settings.EffectiveRateLimit()
	return time.Duration(float64(period) / (float64(n) * renewalBudgetShare))
}

// Plan registers owner's renewal r in account and returns when it should
// start: r.At when the account's budget covers it, earlier when a run of
// renewals must start early. A nil planner returns r.At.
func (p *Renewals) Plan(account string, owner types.NamespacedName, r schedule.Renewal, interval time.Duration) time.Time {
	if p == nil || r.At.IsZero() {
		p.Remove(owner)
		return r.At
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.where[owner]; ok && old != account {
		p.removeLocked(owner)
	}
	a := p.accounts[account]
	if a == nil {
		a = &renewalPlan{entries: map[types.NamespacedName]schedule.Renewal{}, woken: map[types.NamespacedName]time.Time{}}
		p.accounts[account] = a
	}
	r.Key = owner.String()
	if old, ok := a.entries[owner]; !ok || old != r || a.interval != interval {
		a.entries[owner], a.interval, a.dirty = r, interval, true
		p.where[owner] = account
		// The planned time was computed for the old renewal (typically the
		// one just done, so it lies in the past): handing it out until the
		// next replan would renew the same token twice. Its wake is done
		// with too: the waker now wakes every renewal, so keeping it would
		// hold an entry per renewed token.
		delete(a.planned, r.Key)
		delete(a.woken, owner)
	}
	now := p.clock.Now()
	if a.dirty && now.Sub(a.at) >= replanEvery {
		a.replan(now)
	}
	if at, ok := a.planned[r.Key]; ok {
		return at
	}
	return r.At // not planned yet: the waker wakes it at its planned time
}

// Remove forgets owner's renewal (deleted, or never expires).
func (p *Renewals) Remove(owner types.NamespacedName) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removeLocked(owner)
}

func (p *Renewals) removeLocked(owner types.NamespacedName) {
	account, ok := p.where[owner]
	if !ok {
		return
	}
	delete(p.where, owner)
	if a := p.accounts[account]; a != nil {
		delete(a.entries, owner)
		delete(a.woken, owner)
		a.dirty = true
	}
}

func (a *renewalPlan) replan(now time.Time) {
	rs := make([]schedule.Renewal, 0, len(a.entries))
	for _, r := range a.entries {
		rs = append(rs, r)
	}
	a.planned = schedule.PlanRenewals(rs, a.interval)
	a.dirty, a.at = false, now
}

// due replans what changed and returns the owners whose planned start has
// come, in plan order: planned times have whole seconds, and the renewals
// that share one still go in expiry order. Each planned time wakes its owner
// once. Every planned renewal is woken here, also one planned at its own
// time: its requeue (a second after its renewal time, in the work queue
// behind whatever came first) would let renewals planned after it, woken
// here, overtake it.
func (p *Renewals) due() []types.NamespacedName {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	type wake struct {
		owner        types.NamespacedName
		at, deadline time.Time
	}
	var wakes []wake
	for _, a := range p.accounts {
		if a.dirty {
			a.replan(now)
		}
		for owner, r := range a.entries {
			at, ok := a.planned[r.Key]
			if !ok || at.After(now) || a.woken[owner].Equal(at) {
				continue
			}
			a.woken[owner] = at
			wakes = append(wakes, wake{owner, at, r.Deadline})
		}
	}
	slices.SortFunc(wakes, func(x, y wake) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return x.deadline.Compare(y.deadline)
	})
	out := make([]types.NamespacedName, len(wakes))
	for i, w := range wakes {
		out[i] = w.owner
	}
	return out
}
