// Command chaos runs the chaos suite (test/chaos) with the long default
// configuration: `make chaos`, or `make chaos CHAOS_ARGS="--duration=5m"`.
// It prints the table of figures, writes them as JSON to --out and exits 1 on
// any invariant violation (2 if the run could not be carried out).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
	"github.com/servicetoken-operator/servicetoken-operator/test/chaos"
)

func main() {
	cfg, out := chaos.Flags(flag.CommandLine, "", chaos.DefaultConfig())
	flag.Parse()
	if _, err := testenv.AssetsDir(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	cfg.Logf = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := chaos.Run(ctx, *cfg)
	if res != nil {
		fmt.Print(res.Table())
		for _, d := range res.ViolationDetails {
			fmt.Println("violation:", d)
		}
		for _, d := range res.ExpiryDetails {
			fmt.Println("expired (renewal late):", d)
		}
		if werr := res.WriteJSON(*out); werr != nil {
			fmt.Fprintln(os.Stderr, "chaos: writing results:", werr)
		} else {
			fmt.Println("results written to", *out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: run failed:", err)
		os.Exit(2)
	}
	if res.TotalViolations() > 0 {
		fmt.Fprintf(os.Stderr, "chaos: %d invariant violation(s)\n", res.TotalViolations())
		os.Exit(1)
	}
	fmt.Println("chaos: PASS (0 violations)")
}
