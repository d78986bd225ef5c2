package chaos

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
)

// The short configuration is the default here, so `make test` stays under 5
// minutes; -chaos.* flags (e.g. -args -chaos.duration=10m) change it.
var shortCfg, shortOut = Flags(flag.CommandLine, "chaos.", ShortConfig())

func TestChaos(t *testing.T) {
	if _, err := testenv.AssetsDir(); err != nil && !testenv.InCI() {
		t.Skip(err)
	}
	cfg := *shortCfg
	cfg.Logf = t.Logf
	if cfg.Dir == "" {
		// CHAOS_DIR keeps the logs of a run inside `make test` for a look afterwards.
		cfg.Dir = os.Getenv("CHAOS_DIR")
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	res, err := Run(context.Background(), cfg)
	if res != nil {
		t.Log("\n" + res.Table())
		for _, d := range res.ViolationDetails {
			t.Log("violation:", d)
		}
		for _, d := range res.ExpiryDetails {
			t.Log("expired (renewal late):", d)
		}
		out := *shortOut
		if !filepath.IsAbs(out) {
			out = filepath.Join(t.TempDir(), out)
		}
		if werr := res.WriteJSON(out); werr != nil {
			t.Error(werr)
		}
	}
	if err != nil {
		t.Fatalf("chaos run failed: %v", err)
	}
	if n := res.TotalViolations(); n > 0 {
		t.Fatalf("%d invariant violation(s)", n)
	}
}

func TestMatcherFindsPlainAndEncodedSecrets(t *testing.T) {
	secret := "cfast_abcdefghijklmnopqrstuvwxyz0123456789ABCD01234567"
	m := newMatcher([]string{secret, "short"})
	text := []byte("log line: " + secret + " and again " + secret[:30] + " end " + secret)
	if got := m.count(text); got != 2 {
		t.Fatalf("count = %d, want 2", got)
	}
	if got := m.count([]byte("nothing here")); got != 0 {
		t.Fatalf("count = %d, want 0", got)
	}
}

func TestForeignWritesFindsWritesOnAnotherOwnersToken(t *testing.T) {
	const p = "/client/v4/accounts/a/access/service_tokens"
	second, first := sim.CredentialID("second-api-token"), sim.CredentialID("first-api-token")
	log := []sim.Request{
		{Op: sim.OpCreate, Path: p, Credential: second, CreatedTokenID: "created-by-second"},
		{Op: sim.OpCreate, Path: p, Credential: first, CreatedTokenID: "first-token"},
		{Op: sim.OpRefresh, Path: p + "/00000000-0000-0000-0000-000000000000/refresh", Credential: second}, // the write probe: no token
		{Op: sim.OpRefresh, Path: p + "/created-by-second/refresh", Credential: second},
		{Op: sim.OpUpdate, Path: p + "/polled", Credential: second},
		{Op: sim.OpGet, Path: p + "/polled", Credential: first},                          // a read: allowed
		{Op: sim.OpRotate, Path: p + "/first-token/rotate", Credential: first},           // its own
		{Op: sim.OpDelete, Path: p + "/created-by-second", Credential: first},            // foreign
		{Op: sim.OpRotate, Path: p + "/first-token/rotate", Credential: second},          // foreign
		{Op: sim.OpUpdate, Path: p + "/polled", Credential: "someone-else", Status: 200}, // neither cluster
	}
	touches, written := foreignWrites(log, second, map[string]bool{first: true}, map[string]bool{"polled": true})
	if written != 2 {
		t.Errorf("written = %d, want 2", written)
	}
	if len(touches) != 2 || !strings.Contains(touches[0], "delete of token created-by-second by the first cluster") ||
		!strings.Contains(touches[1], "rotate of token first-token by the second cluster") {
		t.Errorf("touches = %q", touches)
	}
	if got, _ := foreignWrites(log[:7], second, map[string]bool{first: true}, map[string]bool{"polled": true}); len(got) != 0 {
		t.Errorf("clean log: touches = %q", got)
	}
}
