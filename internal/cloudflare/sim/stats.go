package sim

import (
	"maps"
	"slices"
	"time"
)

// Request is one /client/v4 request as the RequestLog keeps it. It holds no
// credential, body or secret: the credential only as CredentialID, a
// one-way hash, so a test can tell which client made a request.
type Request struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Query  string    `json:"query,omitempty"`
	Op     string    `json:"op"`
	// Status is 0 when no response was sent (reset or dropped connection).
	Status int       `json:"status"`
	Fault  FaultKind `json:"fault,omitempty"`
	// Credential is the CredentialID of the request's API token (or legacy
	// key), whether or not it was accepted; empty without one.
	Credential string `json:"credential,omitempty"`
	// CreatedTokenID is the token a create made, also when the response was
	// dropped by a fault.
	CreatedTokenID string `json:"created_token_id,omitempty"`

	rateLimited bool // a 429 from the budget, not from a fault
	lockedOut   bool // this request started a lockout
}

// Stats counts /client/v4 requests since the start or the last ResetStats.
type Stats struct {
	Requests int `json:"requests"`
	// ByOp counts requests per operation (OpList … OpRotate, OpUnknown).
	ByOp map[string]int `json:"by_op"`
	// ByStatus counts responses per HTTP status; 0 counts requests that got
	// no response (reset or dropped).
	ByStatus map[int]int `json:"by_status"`
	// ByOpStatus is ByStatus per operation.
	ByOpStatus map[string]map[int]int `json:"by_op_status"`
	// Faults counts injected faults per kind.
	Faults map[FaultKind]int `json:"faults"`
	// RateLimited counts 429s from the rate budget, lockouts included
	// (Fault429 is counted in Faults, and both in ByStatus[429]).
	RateLimited int `json:"rate_limited"`
	// Lockouts counts the times a user exceeded the budget and was locked
	// out, by a request or by SpendBudget.
	Lockouts int `json:"lockouts"`
}

func newStats() Stats {
	return Stats{
		ByOp:       map[string]int{},
		ByStatus:   map[int]int{},
		ByOpStatus: map[string]map[int]int{},
		Faults:     map[FaultKind]int{},
	}
}

// Count returns how many requests of op got status.
func (st Stats) Count(op string, status int) int { return st.ByOpStatus[op][status] }

func (st Stats) clone() Stats {
	c := Stats{
		Requests:    st.Requests,
		ByOp:        maps.Clone(st.ByOp),
		ByStatus:    maps.Clone(st.ByStatus),
		ByOpStatus:  make(map[string]map[int]int, len(st.ByOpStatus)),
		Faults:      maps.Clone(st.Faults),
		RateLimited: st.RateLimited,
		Lockouts:    st.Lockouts,
	}
	for op, m := range st.ByOpStatus {
		c.ByOpStatus[op] = maps.Clone(m)
	}
	return c
}

func (s *Server) record(r Request) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := &s.stats
	st.Requests++
	st.ByOp[r.Op]++
	st.ByStatus[r.Status]++
	if st.ByOpStatus[r.Op] == nil {
		st.ByOpStatus[r.Op] = map[int]int{}
	}
	st.ByOpStatus[r.Op][r.Status]++
	if r.Fault != "" {
		st.Faults[r.Fault]++
	}
	if r.rateLimited {
		st.RateLimited++
	}
	if r.lockedOut {
		st.Lockouts++
	}
	limit := s.opts.RequestLogLimit
	if limit < 0 {
		return
	}
	s.log = append(s.log, r)
	// Trim in batches so appends stay amortised O(1).
	if len(s.log) >= 2*limit {
		s.log = slices.Clone(s.log[len(s.log)-limit:])
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats.clone()
}

// RequestLog returns the logged requests, oldest first (at most
// Options.RequestLogLimit of them).
func (s *Server) RequestLog() []Request {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	limit := s.opts.RequestLogLimit
	if limit >= 0 && len(s.log) > limit {
		return slices.Clone(s.log[len(s.log)-limit:])
	}
	return slices.Clone(s.log)
}

// ResetStats zeroes the counters and empties the request log.
func (s *Server) ResetStats() {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	s.stats = newStats()
	s.log = nil
}
