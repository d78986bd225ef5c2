package sim

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// TokenState is everything the simulator knows about a token, secrets
// included. It is the test oracle (Tokens, GET /_sim/tokens); it never leaves
// through /client/v4 except as the published token object.
type TokenState struct {
	ID string `json:"id"`
	// Exactly one of AccountID and ZoneID is set.
	AccountID string `json:"account_id,omitempty"`
	ZoneID    string `json:"zone_id,omitempty"`
	ClientID  string `json:"client_id"`
	Name      string `json:"name"`
	// Duration is echoed as given: a Go duration or "forever".
	Duration string `json:"duration"`
	Enabled  bool   `json:"enabled"`
	// ExpiresAt is zero for a "forever" token.
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	LastSeenAt time.Time `json:"last_seen_at,omitzero"`

	ClientSecret        string `json:"client_secret"`
	ClientSecretVersion int    `json:"client_secret_version"`
	// PreviousClientSecret keeps working while now is before
	// PreviousClientSecretExpiresAt (and the token is enabled and unexpired).
	PreviousClientSecret          string    `json:"previous_client_secret,omitempty"`
	PreviousClientSecretExpiresAt time.Time `json:"previous_client_secret_expires_at,omitzero"`
}

// IsZone reports whether the token lives in a zone.
func (t TokenState) IsZone() bool { return t.ZoneID != "" }

// Expired reports whether the token has expired at now.
func (t TokenState) Expired(now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// Accepts reports whether Access would let clientSecret in at now: the token
// is enabled and unexpired, and the secret is the current one or the previous
// one within its grace period.
func (t TokenState) Accepts(clientSecret string, now time.Time) bool {
	if clientSecret == "" || !t.Enabled || t.Expired(now) {
		return false
	}
	if clientSecret == t.ClientSecret {
		return true
	}
	return t.PreviousClientSecret != "" && clientSecret == t.PreviousClientSecret &&
		now.Before(t.PreviousClientSecretExpiresAt)
}

// scopeKey names an account or a zone.
type scopeKey struct {
	zone bool
	id   string
}

func (t *TokenState) scope() scopeKey {
	if t.ZoneID != "" {
		return scopeKey{zone: true, id: t.ZoneID}
	}
	return scopeKey{id: t.AccountID}
}

// entry is a stored token. Deleted entries stay in their scope's order slice
// as tombstones until the next compaction, so deletes are O(1) while lists
// stay in creation order.
type entry struct {
	state   TokenState
	seq     uint64 // creation order
	deleted bool
}

// scopeIndex holds one account's or zone's tokens in creation order plus a
// name index, so that paging and the exact-name filter stay cheap with
// 10,000+ tokens.
type scopeIndex struct {
	order      []*entry
	tombstones int
	byName     map[string][]*entry // each slice in creation order
}

func (ix *scopeIndex) live() int { return len(ix.order) - ix.tombstones }

// store is not safe for concurrent use; Server.mu guards it.
type store struct {
	byID       map[string]*entry
	byClientID map[string]*entry
	scopes     map[scopeKey]*scopeIndex
	nextSeq    uint64
}

func newStore() *store {
	return &store{
		byID:       map[string]*entry{},
		byClientID: map[string]*entry{},
		scopes:     map[scopeKey]*scopeIndex{},
	}
}

func (s *store) index(k scopeKey) *scopeIndex {
	ix := s.scopes[k]
	if ix == nil {
		ix = &scopeIndex{byName: map[string][]*entry{}}
		s.scopes[k] = ix
	}
	return ix
}

func (s *store) insert(t TokenState) *entry {
	s.nextSeq++
	e := &entry{state: t, seq: s.nextSeq}
	s.byID[t.ID] = e
	s.byClientID[t.ClientID] = e
	ix := s.index(t.scope())
	ix.order = append(ix.order, e)
	ix.byName[t.Name] = append(ix.byName[t.Name], e)
	return e
}

// get finds a live token by ID within a scope; a token of another scope is
// as good as missing.
func (s *store) get(k scopeKey, id string) *entry {
	e := s.byID[id]
	if e == nil || e.state.scope() != k {
		return nil
	}
	return e
}

func (s *store) remove(e *entry) {
	if e.deleted {
		return
	}
	e.deleted = true
	delete(s.byID, e.state.ID)
	delete(s.byClientID, e.state.ClientID)
	ix := s.index(e.state.scope())
	ix.byName[e.state.Name] = removeEntry(ix.byName[e.state.Name], e)
	if len(ix.byName[e.state.Name]) == 0 {
		delete(ix.byName, e.state.Name)
	}
	ix.tombstones++
	// Compact once tombstones outnumber live tokens: amortised O(1) per delete.
	if ix.tombstones > 64 && ix.tombstones > ix.live() {
		ix.order = slices.DeleteFunc(ix.order, func(e *entry) bool { return e.deleted })
		ix.tombstones = 0
	}
}

// rename keeps the name index in creation order when a token's name changes.
func (s *store) rename(e *entry, name string) {
	if e.state.Name == name {
		return
	}
	ix := s.index(e.state.scope())
	ix.byName[e.state.Name] = removeEntry(ix.byName[e.state.Name], e)
	if len(ix.byName[e.state.Name]) == 0 {
		delete(ix.byName, e.state.Name)
	}
	list := ix.byName[name]
	i, _ := slices.BinarySearchFunc(list, e.seq, func(x *entry, seq uint64) int { return cmp.Compare(x.seq, seq) })
	ix.byName[name] = slices.Insert(list, i, e)
	e.state.Name = name
}

func removeEntry(list []*entry, e *entry) []*entry {
	if i := slices.Index(list, e); i >= 0 {
		return slices.Delete(list, i, i+1)
	}
	return list
}

// listFilter selects tokens for a list call.
type listFilter struct {
	name   string // exact match when set
	search string // case-insensitive substring of name or client_id when set
}

func (f listFilter) match(t *TokenState) bool {
	if f.name != "" && t.Name != f.name {
		return false
	}
	if f.search != "" {
		q := strings.ToLower(f.search)
		if !strings.Contains(strings.ToLower(t.Name), q) && !strings.Contains(strings.ToLower(t.ClientID), q) {
			return false
		}
	}
	return true
}

// page returns the tokens of page (1-based) at perPage, and the total number
// of matches. perPage <= 0 means everything on one page.
func (s *store) page(k scopeKey, f listFilter, page, perPage int) ([]TokenState, int) {
	ix := s.scopes[k]
	if ix == nil {
		return []TokenState{}, 0
	}
	candidates := ix.order
	if f.name != "" {
		candidates = ix.byName[f.name]
	}
	total := 0
	var skip, limit int
	if perPage > 0 {
		skip = (page - 1) * perPage
		limit = perPage
	} else {
		limit = ix.live()
	}
	// Fast path: with no filter the total is known and the loop can stop at
	// the end of the page.
	unfiltered := f.name == "" && f.search == ""
	if unfiltered {
		total = ix.live()
	}
	out := make([]TokenState, 0, min(limit, max(ix.live()-skip, 0)))
	n := 0
	for _, e := range candidates {
		if e.deleted || !f.match(&e.state) {
			continue
		}
		if n >= skip && len(out) < limit {
			out = append(out, e.state)
		}
		n++
		if unfiltered && len(out) == limit {
			break
		}
	}
	if !unfiltered {
		total = n
	}
	return out, total
}

// all returns every live token in creation order.
func (s *store) all() []TokenState {
	entries := make([]*entry, 0, len(s.byID))
	for _, e := range s.byID {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]TokenState, len(entries))
	for i, e := range entries {
		out[i] = e.state
	}
	return out
}
