package plugin

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

func newStatusCommand(e *env) *cobra.Command {
	var sel selection
	cmd := &cobra.Command{
		Use:   "status [NAME... | --all | -l SELECTOR] [-A]",
		Short: "Show readiness, expiry, next renewal and last rotation of ServiceTokens",
		Long: `Show readiness, expiry, next renewal and last rotation of ServiceTokens.

Without names it lists every ServiceToken in the namespace (every namespace with -A).
REASON is the Ready condition's reason when the token is not Ready; see
docs/troubleshooting.md for each reason.`,
		Example: `  kubectl servicetoken status -n payments
  kubectl servicetoken status -A -l team=payments`,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, tokens, err := e.load(cmd.Context(), &sel, args, true)
			if errors.Is(err, errNoneFound) { // as kubectl get: said, not failed
				_, _ = fmt.Fprintln(e.streams.ErrOut, err)
				return nil
			}
			if err != nil {
				return err
			}
			return printStatus(e.streams.Out, tokens, sel.allNamespaces, e.clock.Now())
		},
	}
	sel.addFlags(cmd)
	return cmd
}

// printStatus writes the status table, times relative to now.
func printStatus(w io.Writer, tokens []v1alpha1.ServiceToken, withNamespace bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	header := []string{"NAME", "READY", "REASON", "EXPIRES", "NEXT RENEWAL", "LAST ROTATION"}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	_, _ = fmt.Fprintln(tw, strings.Join(header, "\t"))
	for i := range tokens {
		st := &tokens[i]
		row := []string{st.Name, readyStatus(st), notReadyReason(st), expires(st, now),
			relative(st.Status.RenewalTime, now), relative(st.Status.LastRotationTime, now)}
		if withNamespace {
			row = append([]string{st.Namespace}, row...)
		}
		_, _ = fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	return nil
}

// readyStatus is the Ready condition's status as `kubectl get` shows it.
func readyStatus(st *v1alpha1.ServiceToken) string {
	if c := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return string(c.Status)
	}
	return "Unknown"
}

// notReadyReason is the Ready condition's reason, only when it is not True:
// a Ready token's reason says nothing.
func notReadyReason(st *v1alpha1.ServiceToken) string {
	c := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady)
	if c == nil || c.Status == metav1.ConditionTrue || c.Reason == "" {
		return "-"
	}
	return c.Reason
}

// expires is the token's expiry relative to now; "never" for a token that
// exists without an expiry (duration forever).
func expires(st *v1alpha1.ServiceToken, now time.Time) string {
	if st.Status.ExpiresAt == nil && st.Status.TokenID != "" && st.Spec.Duration == v1alpha1.DurationForever {
		return "never"
	}
	return relative(st.Status.ExpiresAt, now)
}

// relative renders t as "in 29d" or "3h ago" (kubectl's AGE precision), "-"
// when unset.
func relative(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	switch {
	case d == 0:
		return "now"
	case d > 0:
		return "in " + duration.ShortHumanDuration(d)
	default:
		return duration.ShortHumanDuration(-d) + " ago"
	}
}
