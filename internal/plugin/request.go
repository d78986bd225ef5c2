package plugin

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// request is one of the one-off actions the operator takes on a request
// annotation (api/v1alpha1/conditions.go): any new value is a new request.
type request struct {
	verb, annotation, short, done string
	// skip says why a token is left alone, or "" to request the action. It
	// mirrors the Argo CD actions (hack/argocd): the operator ignores
	// requests on a token being deleted, and a forever token has no expiry
	// to extend.
	skip func(*v1alpha1.ServiceToken) string
}

var rotate = request{
	verb: "rotate", annotation: v1alpha1.AnnotationRotateRequestedAt,
	short: "Request a new client secret; the previous one keeps working for spec.rotation.gracePeriod",
	done:  "rotation requested",
	skip:  skipDeleting,
}

var refresh = request{
	verb: "refresh", annotation: v1alpha1.AnnotationRefreshRequestedAt,
	short: "Request an extension of the token's expiry; the client secret stays",
	done:  "refresh requested",
	skip: func(st *v1alpha1.ServiceToken) string {
		if why := skipDeleting(st); why != "" {
			return why
		}
		if st.Spec.Duration == v1alpha1.DurationForever {
			return "its duration is forever: there is no expiry to extend"
		}
		return ""
	},
}

func skipDeleting(st *v1alpha1.ServiceToken) string {
	if !st.DeletionTimestamp.IsZero() {
		return "it is being deleted"
	}
	return ""
}

func newRequestCommand(e *env, r request) *cobra.Command {
	var sel selection
	cmd := &cobra.Command{
		Use:   r.verb + " (NAME... | --all | -l SELECTOR) [-A]",
		Short: r.short,
		Example: fmt.Sprintf(`  kubectl servicetoken %[1]s api-client -n payments
  kubectl servicetoken %[1]s --all -n payments
  kubectl servicetoken %[1]s -l team=payments -A`, r.verb),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, tokens, err := e.load(cmd.Context(), &sel, args, false)
			if err != nil {
				return err
			}
			// One value for the whole run; nanoseconds so that a second run
			// within the same second is still a new request.
			value := e.clock.Now().UTC().Format(time.RFC3339Nano)
			patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{r.annotation: value}}})
			if err != nil {
				return fmt.Errorf("encoding the patch: %w", err)
			}
			for i := range tokens {
				st := &tokens[i]
				if why := r.skip(st); why != "" {
					_, _ = fmt.Fprintf(e.streams.ErrOut, "servicetoken %s skipped: %s\n", key(st), why)
					continue
				}
				// A merge patch of the annotation alone: no resourceVersion,
				// so it never conflicts with the operator's writes, and no
				// other field is touched.
				if err := c.Patch(cmd.Context(), st, client.RawPatch(types.MergePatchType, patch)); err != nil {
					return fmt.Errorf("requesting a %s of ServiceToken %s: %w", r.verb, key(st), err)
				}
				_, _ = fmt.Fprintf(e.streams.Out, "servicetoken %s: %s\n", key(st), r.done)
			}
			return nil
		},
	}
	sel.addFlags(cmd)
	return cmd
}
