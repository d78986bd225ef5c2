package controller

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// Inventory keeps, per credentials and account (or zone), the list of its
// Cloudflare tokens
// as one paginated List returned it. Every ServiceToken of that account
// observes its token here instead of with a GET of its own, so finding and
// drift-checking N tokens costs ceil(N/1000) calls, not N. Writes made by the
// operator are put back into the snapshot, so it stays true between lists.
type Inventory struct {
	clock clock.PassiveClock
	group singleflight.Group

	mu        sync.Mutex
	snapshots map[inventoryKey]*snapshot
	owners    map[string]types.NamespacedName // token ID -> ServiceToken, for drift events
}

type inventoryKey struct {
	account string // credentials key (resolved.Shared): credentials decide what a list sees
	scope   cf.Scope
}

type snapshot struct {
	takenAt time.Time
	byID    map[string]cf.Token
	client  cf.Client
}

// NewInventory returns an empty inventory.
func NewInventory(clk clock.PassiveClock) *Inventory {
	return &Inventory{clock: clk, snapshots: map[inventoryKey]*snapshot{}, owners: map[string]types.NamespacedName{}}
}

// View is a read-only look at one account's tokens. It reads the snapshot
// under the inventory's lock: writes the operator makes are put into the
// snapshot in place (copying a map of thousands of tokens on every write
// would cost O(N) per write, O(N²) for a cold start).
type View struct {
	TakenAt time.Time
	mu      *sync.Mutex // the inventory's; nil for a view nobody writes to
	byID    map[string]cf.Token
}

func (v View) lock() func() {
	if v.mu == nil {
		return func() {}
	}
	v.mu.Lock()
	return v.mu.Unlock
}

// Get returns the token with that ID, if the list had it.
func (v View) Get(id string) (cf.Token, bool) {
	defer v.lock()()
	t, ok := v.byID[id]
	return t, ok
}

// ByName returns every token with that name, newest first.
func (v View) ByName(name string) []cf.Token {
	var out []cf.Token
	unlock := v.lock()
	for _, t := range v.byID {
		if t.Name == name {
			out = append(out, t)
		}
	}
	unlock()
	for i := 1; i < len(out); i++ { // few items: insertion sort, newest first
		for j := i; j > 0 && out[j].CreatedAt.After(out[j-1].CreatedAt); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Refresh lists the account's tokens now (shared by concurrent callers) and
// returns them. Used to settle an interrupted operation, where only a list
// made after the attempt can tell its outcome.
func (inv *Inventory) Refresh(ctx context.Context, c cf.Client, account string, scope cf.Scope) (View, error) {
	key := inventoryKey{account: account, scope: scope}
	called := inv.clock.Now()
	for attempt := 0; ; attempt++ {
		// Joining a list already in flight is only good enough when it
		// started after this call: one that started before may miss the
		// very write being settled (and make a lost create look undone).
		_, err, _ := inv.group.Do("refresh|"+account+"|"+scope.AccountID+"|"+scope.ZoneID, func() (any, error) {
			return nil, inv.refresh(ctx, c, key)
		})
		if err != nil {
			return View{}, err
		}
		if v, ok := inv.fresh(key, called); ok {
			return v, nil
		}
		if attempt == 2 { // older lists keep landing after ours: a retry will do
			return View{}, &cf.Error{Kind: cf.KindTransient, Op: "list", Message: "no token list newer than the operation to settle"}
		}
	}
}

// Lookup returns the account's tokens as listed no earlier than notBefore,
// listing again (once, shared by every concurrent caller) when the snapshot is
// older. Pass a recent notBefore to see changes made outside the operator.
func (inv *Inventory) Lookup(ctx context.Context, c cf.Client, account string, scope cf.Scope, notBefore time.Time) (View, error) {
	key := inventoryKey{account: account, scope: scope}
	if v, ok := inv.fresh(key, notBefore); ok {
		return v, nil
	}
	_, err, _ := inv.group.Do(account+"|"+scope.AccountID+"|"+scope.ZoneID, func() (any, error) {
		if _, ok := inv.fresh(key, notBefore); ok {
			return nil, nil
		}
		return nil, inv.refresh(ctx, c, key)
	})
	if err != nil {
		return View{}, err
	}
	v, _ := inv.fresh(key, time.Time{})
	return v, nil
}

func (inv *Inventory) fresh(key inventoryKey, notBefore time.Time) (View, bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	s := inv.snapshots[key]
	if s == nil || s.takenAt.Before(notBefore) {
		return View{}, false
	}
	return View{TakenAt: s.takenAt, mu: &inv.mu, byID: s.byID}, true
}

// refresh lists the account's tokens and swaps the snapshot in. It returns the
// IDs whose token changed or vanished since the previous snapshot.
func (inv *Inventory) refresh(ctx context.Context, c cf.Client, key inventoryKey) error {
	started := inv.clock.Now()
	tokens, err := c.List(ctx, key.scope, cf.ListOptions{})
	if err != nil {
		return err
	}
	byID := make(map[string]cf.Token, len(tokens))
	inv.mu.Lock()
	defer inv.mu.Unlock()
	old := inv.snapshots[key]
	for _, t := range tokens {
		if old != nil { // a field a list leaves out keeps its last known value
			t = t.Fill(old.byID[t.ID])
		}
		byID[t.ID] = t
	}
	// Stamp with the start of the list: a write that finished during it may be
	// missing from the result, and is put back below.
	if old != nil {
		for id, t := range old.byID {
			if t.UpdatedAt.After(started) || t.CreatedAt.After(started) {
				byID[id] = t
			}
		}
	}
	inv.snapshots[key] = &snapshot{takenAt: started, byID: byID, client: c}
	return nil
}

// Put records a token the operator just created or changed.
func (inv *Inventory) Put(account string, scope cf.Scope, t cf.Token) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	s := inv.snapshots[inventoryKey{account, scope}]
	if s == nil {
		return // nothing listed yet: the first list will see it
	}
	t = t.Fill(s.byID[t.ID])
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = inv.clock.Now()
	}
	s.byID[t.ID] = t
}

// Remove records a token the operator just deleted (or found gone).
func (inv *Inventory) Remove(account string, scope cf.Scope, id string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	delete(inv.owners, id)
	s := inv.snapshots[inventoryKey{account, scope}]
	if s == nil {
		return
	}
	delete(s.byID, id)
}

// Track remembers which ServiceToken owns a token, so a drift check can wake
// exactly the objects whose tokens changed outside the operator.
func (inv *Inventory) Track(id string, owner types.NamespacedName) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.owners[id] = owner
}

// Forget drops every snapshot of an account (its credentials changed or it was deleted).
func (inv *Inventory) Forget(account string) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	for k := range inv.snapshots {
		if k.account == account {
			delete(inv.snapshots, k)
		}
	}
}

// DriftCheck lists every known account again and returns the owners of
// tokens that changed or vanished since the last list. Call it every drift
// period: one paginated list per account, however many ServiceTokens.
func (inv *Inventory) DriftCheck(ctx context.Context) ([]types.NamespacedName, error) {
	inv.mu.Lock()
	type job struct {
		key  inventoryKey
		prev map[string]cf.Token
		c    cf.Client
	}
	var jobs []job
	for k, s := range inv.snapshots {
		jobs = append(jobs, job{k, s.byID, s.client})
	}
	inv.mu.Unlock()

	var changed []types.NamespacedName
	var firstErr error
	for _, j := range jobs {
		if err := inv.refresh(ctx, j.c, j.key); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		v, _ := inv.fresh(j.key, time.Time{})
		inv.mu.Lock()
		for id, before := range j.prev {
			after, ok := v.byID[id]
			if ok && !tokenChanged(before, after) {
				continue
			}
			if owner, tracked := inv.owners[id]; tracked {
				changed = append(changed, owner)
			}
		}
		inv.mu.Unlock()
	}
	return changed, firstErr
}

func tokenChanged(a, b cf.Token) bool {
	return a.Name != b.Name || a.Enabled != b.Enabled || a.Duration != b.Duration ||
		!a.ExpiresAt.Equal(b.ExpiresAt) || a.ClientID != b.ClientID ||
		(a.Knows(cf.FieldUpdatedAt) && b.Knows(cf.FieldUpdatedAt) && !a.UpdatedAt.Equal(b.UpdatedAt)) // a rotation shows only here
}
