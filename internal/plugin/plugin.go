// Package plugin is the kubectl plugin kubectl-servicetoken: it requests
// rotations and refreshes of ServiceTokens, shows their renewal status and
// waits until they are Ready. cmd/kubectl-servicetoken only calls NewCommand;
// everything else lives here so the tests run it against a real API server
// with a fake clock.
package plugin

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// env is what every subcommand needs: where to print, what time it is, and
// how to reach the cluster.
type env struct {
	streams genericiooptions.IOStreams
	clock   clock.WithTicker
	config  *genericclioptions.ConfigFlags
}

// NewCommand returns the root command. The clock is the one time source of
// every subcommand (relative times, request values, wait's deadline).
func NewCommand(streams genericiooptions.IOStreams, clk clock.WithTicker) *cobra.Command {
	e := &env{streams: streams, clock: clk, config: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:   "kubectl-servicetoken",
		Short: "Rotate, refresh, inspect and wait for Cloudflare Access ServiceTokens",
		Long: `kubectl servicetoken works with the ServiceTokens of servicetoken-operator.

  rotate   request a new client secret (the previous one keeps working for the grace period)
  refresh  request an extension of the token's expiry (the secret stays)
  status   show readiness, expiry, next renewal and last rotation
  wait     block until ServiceTokens are Ready`,
		Annotations: map[string]string{
			// Usage and help then read "kubectl servicetoken ...".
			cobra.CommandDisplayNameAnnotation: "kubectl servicetoken",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	e.config.AddFlags(root.PersistentFlags())
	root.AddCommand(
		newRequestCommand(e, rotate),
		newRequestCommand(e, refresh),
		newStatusCommand(e),
		newWaitCommand(e),
	)
	return root
}

// client connects to the cluster named by the kubeconfig flags.
func (e *env) client() (client.Client, error) {
	cfg, err := e.config.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the scheme: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, nil
}

// namespace is -n, else the kubeconfig context's namespace, else "default".
func (e *env) namespace() (string, error) {
	ns, _, err := e.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	return ns, nil
}

// selection names the ServiceTokens a subcommand acts on, the way
// `kubectl get` and `cmctl renew` take them: names, or --all, or a label
// selector, in one namespace or all of them.
type selection struct {
	names         []string
	all           bool
	selector      string
	allNamespaces bool
}

func (s *selection) addFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&s.all, "all", false, "every ServiceToken in the namespace (with -A: in every namespace)")
	cmd.Flags().StringVarP(&s.selector, "selector", "l", "", "label selector, e.g. -l team=payments")
	cmd.Flags().BoolVarP(&s.allNamespaces, "all-namespaces", "A", false, "select in every namespace (needs --all or -l)")
}

// validate checks the combination of names and flags. emptyMeansAll lets
// status list the namespace without --all, as kubectl get does; commands
// that change or wait on tokens want them named or selected explicitly.
func (s *selection) validate(emptyMeansAll bool) error {
	named := len(s.names) > 0
	switch {
	case named && s.all:
		return errors.New("give ServiceToken names or --all, not both")
	case named && s.selector != "":
		return errors.New("give ServiceToken names or -l/--selector, not both")
	case named && s.allNamespaces:
		return errors.New("ServiceToken names cannot be combined with -A/--all-namespaces; use -n")
	case s.all && s.selector != "":
		return errors.New("give --all or -l/--selector, not both")
	case !named && !s.all && s.selector == "" && !emptyMeansAll:
		return errors.New("give one or more ServiceToken names, --all or -l/--selector")
	}
	if _, err := labels.Parse(s.selector); err != nil {
		return fmt.Errorf("invalid selector %q: %w", s.selector, err)
	}
	return nil
}

// errNoneFound: a selection by --all or -l matched nothing.
var errNoneFound = errors.New("no ServiceTokens found")

// fetch returns the selected ServiceTokens. A named one that does not exist
// is an error, as a typo in a script should be; so is an empty list
// (errNoneFound).
func (s *selection) fetch(ctx context.Context, c client.Client, namespace string) ([]v1alpha1.ServiceToken, error) {
	if len(s.names) > 0 {
		out := make([]v1alpha1.ServiceToken, 0, len(s.names))
		for _, name := range s.names {
			var st v1alpha1.ServiceToken
			if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &st); err != nil {
				return nil, fmt.Errorf("getting ServiceToken %s/%s: %w", namespace, name, err)
			}
			out = append(out, st)
		}
		return out, nil
	}
	sel, err := labels.Parse(s.selector)
	if err != nil {
		return nil, fmt.Errorf("invalid selector %q: %w", s.selector, err)
	}
	opts := []client.ListOption{client.MatchingLabelsSelector{Selector: sel}}
	if !s.allNamespaces {
		opts = append(opts, client.InNamespace(namespace))
	}
	var list v1alpha1.ServiceTokenList
	if err := c.List(ctx, &list, opts...); err != nil {
		return nil, fmt.Errorf("listing ServiceTokens: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, fmt.Errorf("%w %s", errNoneFound, s.where(namespace))
	}
	return list.Items, nil
}

// where says in words what was selected, for "nothing found" messages.
func (s *selection) where(namespace string) string {
	scope := "in namespace " + namespace
	if s.allNamespaces {
		scope = "in any namespace"
	}
	if s.selector != "" {
		return fmt.Sprintf("%s matching %q", scope, s.selector)
	}
	return scope
}

// prepare validates the selection and connects: the common start of every
// subcommand.
func (e *env) prepare(sel *selection, args []string, emptyMeansAll bool) (client.Client, string, error) {
	sel.names = args
	if err := sel.validate(emptyMeansAll); err != nil {
		return nil, "", err
	}
	ns, err := e.namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := e.client()
	if err != nil {
		return nil, "", err
	}
	return c, ns, nil
}

// load is prepare followed by one fetch.
func (e *env) load(ctx context.Context, sel *selection, args []string, emptyMeansAll bool) (client.Client, []v1alpha1.ServiceToken, error) {
	c, ns, err := e.prepare(sel, args, emptyMeansAll)
	if err != nil {
		return nil, nil, err
	}
	tokens, err := sel.fetch(ctx, c, ns)
	return c, tokens, err
}

func key(st *v1alpha1.ServiceToken) string { return st.Namespace + "/" + st.Name }
