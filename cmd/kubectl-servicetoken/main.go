// Command kubectl-servicetoken is a kubectl plugin for servicetoken-operator:
// `kubectl servicetoken rotate|refresh|status|wait`. Install it with
//
//	go install github.com/servicetoken-operator/servicetoken-operator/cmd/kubectl-servicetoken@latest
//
// and kubectl finds it on the PATH. See docs/kubectl-plugin.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"

	"github.com/servicetoken-operator/servicetoken-operator/internal/plugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	if err := plugin.NewCommand(streams, clock.RealClock{}).ExecuteContext(ctx); err != nil {
		_, _ = fmt.Fprintln(os.Stderr, "error:", err)
		stop()
		os.Exit(1)
	}
}
