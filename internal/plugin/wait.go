package plugin

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// pollInterval is how often wait reads the ServiceTokens again.
const pollInterval = time.Second

func newWaitCommand(e *env) *cobra.Command {
	var sel selection
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "wait (NAME... | --all | -l SELECTOR) [-A] [--timeout DURATION]",
		Short: "Wait until ServiceTokens are Ready",
		Long: `Wait until ServiceTokens are Ready: the Ready condition is True and it is
for the object's current generation, so a spec change just applied is not
mistaken for done.

Exits 0 when all are Ready. On timeout it exits non-zero and names each
ServiceToken that is not Ready with its reason and message. A named
ServiceToken that does not exist is an error at once.`,
		Example: `  kubectl apply -f servicetoken.yaml
  kubectl servicetoken wait api-client -n payments --timeout 2m`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := e.prepare(&sel, args, false)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ticker := e.clock.NewTicker(pollInterval)
			defer ticker.Stop()
			deadline := e.clock.NewTimer(timeout)
			defer deadline.Stop()
			for {
				// unmet is what is reported if the deadline comes now.
				var unmet error
				tokens, err := sel.fetch(ctx, c, ns)
				switch {
				case apierrors.IsNotFound(err), errors.Is(err, errNoneFound):
					return err
				case err != nil:
					// Anything else may pass (an API server restart): keep
					// trying until the deadline, and say what failed.
					_, _ = fmt.Fprintf(e.streams.ErrOut, "retrying: %v\n", err)
					unmet = fmt.Errorf("timed out after %s: %w", timeout, err)
				default:
					pending := notReady(tokens)
					if len(pending) == 0 {
						for i := range tokens {
							_, _ = fmt.Fprintf(e.streams.Out, "servicetoken %s is Ready\n", key(&tokens[i]))
						}
						return nil
					}
					unmet = fmt.Errorf("timed out after %s; not Ready:\n  %s", timeout, strings.Join(pending, "\n  "))
				}
				if timeout <= 0 { // --timeout=0: look once
					return unmet
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("wait interrupted: %w", ctx.Err())
				case <-deadline.C():
					return unmet
				case <-ticker.C():
				}
			}
		},
	}
	sel.addFlags(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait before giving up (0: check once)")
	return cmd
}

// notReady returns "namespace/name: why" for each token that is not Ready
// for its current generation.
func notReady(tokens []v1alpha1.ServiceToken) []string {
	var out []string
	for i := range tokens {
		if why := whyNotReady(&tokens[i]); why != "" {
			out = append(out, key(&tokens[i])+": "+why)
		}
	}
	return out
}

// whyNotReady is "" for a token whose Ready condition is True and observed
// at its current generation, else the reason and message a user acts on.
func whyNotReady(st *v1alpha1.ServiceToken) string {
	c := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady)
	switch {
	case c == nil:
		return "no Ready condition yet (is the operator running?)"
	case c.ObservedGeneration != st.Generation:
		return fmt.Sprintf("generation %d not reconciled yet (Ready=%s is for generation %d)", st.Generation, c.Status, c.ObservedGeneration)
	case c.Status != metav1.ConditionTrue:
		if c.Message == "" {
			return c.Reason
		}
		return c.Reason + ": " + c.Message
	}
	return ""
}
