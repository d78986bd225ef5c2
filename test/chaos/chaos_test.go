package chaos

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

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
