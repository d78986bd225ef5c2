package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FaultKind is one way a request to Cloudflare can go wrong.
type FaultKind string

const (
	// Fault5xx answers 502 or 503 with an HTML body (as Cloudflare's edge
	// does), not the JSON envelope. Nothing is changed.
	Fault5xx FaultKind = "5xx"
	// Fault429 answers 429 with the JSON envelope and a Retry-After of
	// Faults.RetryAfter, regardless of the real budget. Nothing is changed.
	Fault429 FaultKind = "429"
	// FaultReset resets the connection (SO_LINGER 0, then close) before
	// reading the request: the client gets a transport error and nothing is
	// changed. Note that Go's http.Transport silently retries a GET whose
	// reused connection dies before any response byte, so a reset on an
	// idempotent read may never surface to the caller.
	FaultReset FaultKind = "reset"
	// FaultLatency delays the request by Faults.LatencySpike, then serves it
	// normally (useful against client timeouts).
	FaultLatency FaultKind = "latency"
	// FaultDropResponse commits the operation, then closes the connection
	// without a response: the change happened but the client never learns
	// it (nor the new secret). It applies only to create, rotate and delete.
	FaultDropResponse FaultKind = "drop-response"
)

// AllFaultKinds lists every kind, in a stable order.
var AllFaultKinds = []FaultKind{Fault5xx, Fault429, FaultReset, FaultLatency, FaultDropResponse}

// ParseFaultKind accepts a kind's name ("5xx", "429", "reset", "latency",
// "drop-response").
func ParseFaultKind(s string) (FaultKind, error) {
	k := FaultKind(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(AllFaultKinds, k) {
		return k, nil
	}
	return "", fmt.Errorf("unknown fault kind %q (want one of 5xx, 429, reset, latency, drop-response)", s)
}

// appliesTo reports whether the kind makes sense for an operation:
// drop-response is about writes whose outcome the client cannot see.
func (k FaultKind) appliesTo(op string) bool {
	if k == FaultDropResponse {
		return op == OpCreate || op == OpRotate || op == OpDelete
	}
	return true
}

// Faults configures fault injection into /client/v4 requests.
type Faults struct {
	// Rate is the probability (0..1) that a request gets a fault.
	Rate float64
	// Kinds to choose from, uniformly among those that apply to the
	// request's operation. Empty means all kinds.
	Kinds []FaultKind
	// LatencySpike is the delay of FaultLatency; zero means 2s.
	LatencySpike time.Duration
	// RetryAfter is what Fault429 asks the client to wait; zero means 1s.
	RetryAfter time.Duration
	// Ops restricts faults to requests of these operations (OpList …
	// OpRotate); empty means every operation. Requests of other operations
	// never draw a fault, so a high Rate can target one call ("refresh
	// fails half the time") without disturbing the rest.
	Ops []string
}

func (f Faults) withDefaults() Faults {
	f.Rate = min(max(f.Rate, 0), 1)
	if len(f.Kinds) == 0 {
		f.Kinds = slices.Clone(AllFaultKinds)
	}
	if f.LatencySpike <= 0 {
		f.LatencySpike = 2 * time.Second
	}
	if f.RetryAfter <= 0 {
		f.RetryAfter = time.Second
	}
	return f
}

// faultsJSON is the wire form of Faults for PUT /_sim/faults: durations are
// Go duration strings ("2s"); a bare number is read as seconds.
type faultsJSON struct {
	Rate         float64         `json:"rate"`
	Kinds        []FaultKind     `json:"kinds"`
	LatencySpike json.RawMessage `json:"latency_spike,omitempty"`
	RetryAfter   json.RawMessage `json:"retry_after,omitempty"`
	Ops          []string        `json:"ops,omitempty"`
}

// MarshalJSON writes durations as Go duration strings.
func (f Faults) MarshalJSON() ([]byte, error) {
	out := faultsJSON{Rate: f.Rate, Kinds: f.Kinds, Ops: f.Ops}
	if out.Kinds == nil {
		out.Kinds = []FaultKind{}
	}
	if f.LatencySpike != 0 {
		out.LatencySpike, _ = json.Marshal(f.LatencySpike.String())
	}
	if f.RetryAfter != 0 {
		out.RetryAfter, _ = json.Marshal(f.RetryAfter.String())
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON writes and rejects unknown kinds and
// rates outside 0..1.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var in faultsJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	if in.Rate < 0 || in.Rate > 1 {
		return fmt.Errorf("rate %v is outside 0..1", in.Rate)
	}
	kinds := make([]FaultKind, 0, len(in.Kinds))
	for _, k := range in.Kinds {
		pk, err := ParseFaultKind(string(k))
		if err != nil {
			return err
		}
		kinds = append(kinds, pk)
	}
	ops, err := parseOps(in.Ops)
	if err != nil {
		return err
	}
	spike, err := jsonDuration(in.LatencySpike)
	if err != nil {
		return fmt.Errorf("latency_spike: %w", err)
	}
	retry, err := jsonDuration(in.RetryAfter)
	if err != nil {
		return fmt.Errorf("retry_after: %w", err)
	}
	*f = Faults{Rate: in.Rate, Kinds: kinds, LatencySpike: spike, RetryAfter: retry, Ops: ops}
	return nil
}

// faultableOps are the operations Faults.Ops may name: every endpoint's
// operation (OpUnknown is a routing failure, not a call worth targeting).
var faultableOps = []string{OpList, OpGet, OpCreate, OpUpdate, OpDelete, OpRefresh, OpRotate}

// parseOps checks operation names, so a typo ("refesh") is an error instead
// of a fault configuration that silently never fires.
func parseOps(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(in))
	for _, op := range in {
		op = strings.ToLower(strings.TrimSpace(op))
		if !slices.Contains(faultableOps, op) {
			return nil, fmt.Errorf("unknown operation %q in ops (want some of %s)", op, strings.Join(faultableOps, ", "))
		}
		out = append(out, op)
	}
	return out, nil
}

func jsonDuration(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return time.ParseDuration(s)
	}
	secs, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, fmt.Errorf("want a duration string such as \"2s\" or a number of seconds, got %s", raw)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// drawFault decides whether this request gets a fault, and which.
func (s *Server) drawFault(op string) (FaultKind, Faults) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	f := s.faults
	if len(f.Ops) > 0 && !slices.Contains(f.Ops, op) {
		return "", f // not a targeted operation: no draw, so no fault
	}
	if f.Rate <= 0 || s.faultRand.Float64() >= f.Rate {
		return "", f
	}
	applicable := make([]FaultKind, 0, len(f.Kinds))
	for _, k := range f.Kinds {
		if k.appliesTo(op) {
			applicable = append(applicable, k)
		}
	}
	if len(applicable) == 0 {
		return "", f
	}
	return applicable[s.faultRand.IntN(len(applicable))], f
}

// fiveXXStatus picks 502 or 503 for a Fault5xx.
func (s *Server) fiveXXStatus() int {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	if s.faultRand.IntN(2) == 0 {
		return http.StatusBadGateway
	}
	return http.StatusServiceUnavailable
}

// write5xx imitates Cloudflare's edge error page: HTML, not JSON, so a client
// that assumes every body is the envelope fails to decode it.
func write5xx(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	text := http.StatusText(status)
	// A write error means the client is gone: there is no one to tell.
	_, _ = fmt.Fprintf(w, "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n", status, text, status, text)
}

// abortConnection closes the client's connection without a response. With
// rst it sets SO_LINGER 0 first so the peer sees a reset instead of EOF.
// When the ResponseWriter cannot be hijacked (HTTP/2, a recorder) it falls
// back to http.ErrAbortHandler, which net/http turns into an aborted
// connection or stream.
func abortConnection(w http.ResponseWriter, rst bool) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if rst {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	_ = conn.Close()
}

// sleep waits d or until ctx ends. It uses real time even when Options.Clock
// is fake: latency exists to exercise clients' real timeouts.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
