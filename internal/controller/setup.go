package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
	"github.com/servicetoken-operator/servicetoken-operator/internal/metrics"
)

// SetupOptions configure Setup; zero values are production's defaults.
type SetupOptions struct {
	// Clock is the controllers' time source. Default: the real clock.
	Clock clock.PassiveClock
	// Factory builds Cloudflare clients. Default: the SDK-backed factory with
	// metrics and per-account rate limiters.
	Factory cf.Factory
	// WrapClient wraps every Cloudflare client handed to a controller (tests
	// inject faults after real calls, keeping the factory's limiters).
	WrapClient func(cf.Client) cf.Client
	// WrapKubeClient wraps the ServiceToken reconciler's Kubernetes client
	// (tests count its requests).
	WrapKubeClient func(client.Client) client.Client
	// Recorder receives events. Default: the manager's recorder.
	Recorder events.EventRecorder
	// Counters receive rotations and refreshes. Default: the metrics package.
	Counters Counters
	// DefaultAPIURL is the Cloudflare API for accounts without spec.apiURL.
	DefaultAPIURL string
	// InstallID tells this install's account finalizer from others' in the
	// same cluster (--install-id); see AccountFinalizerFor. Default: none.
	InstallID string
	// AllowedAPIURLs are the URL prefixes accounts may send credentials to
	// (--allowed-api-urls); DefaultAPIURL is always allowed. Default:
	// DefaultAllowedAPIURLs (Cloudflare's API only).
	AllowedAPIURLs []string
	// DriftCheckPeriod is how often each account's tokens are listed.
	DriftCheckPeriod time.Duration
	// Namespaces are the namespaces the manager's cache watches, as given to
	// CacheOptions (nil: all); the credentials Secrets are watched in these.
	Namespaces map[string]cache.Config
	// CredentialsRecheck is how often accounts try their credentials on
	// Cloudflare again with nothing changed. Default 5m.
	CredentialsRecheck time.Duration
	// ServiceToken tunes the ServiceToken controller.
	ServiceToken Options
}

// Setup wires the account and ServiceToken controllers into mgr. It is the
// one place the operator is assembled: cmd/main.go and the test suites both
// call it, so tests run the renewal planner, budget admission and the rest
// of the production wiring.
func Setup(mgr ctrl.Manager, o SetupOptions) error {
	if n := o.ServiceToken.ClusterName; n != "" {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return fmt.Errorf("invalid cluster name %q: %s", n, strings.Join(errs, "; "))
		}
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Factory == nil {
		cf.RegisterMetrics()
		fclk, ok := o.Clock.(clock.Clock) // the limiters wait, so they need a full clock
		if !ok {
			fclk = clock.RealClock{}
		}
		o.Factory = cf.NewFactory(cf.FactoryOptions{Metrics: true, Clock: fclk})
	}
	if o.Recorder == nil {
		o.Recorder = mgr.GetEventRecorder("servicetoken-operator")
	}
	if o.Counters == nil {
		counters, err := metrics.Register(mgr.GetCache())
		if err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
		o.Counters = counters
	}
	kube := mgr.GetClient()
	if o.WrapKubeClient != nil {
		kube = o.WrapKubeClient(kube)
	}
	if err := indexCredentialsUse(context.Background(), mgr); err != nil {
		return fmt.Errorf("indexing credentials use: %w", err)
	}
	if o.AllowedAPIURLs == nil {
		o.AllowedAPIURLs = []string{DefaultAllowedAPIURLs}
	}
	allowed, err := NewAPIURLAllowList(o.AllowedAPIURLs, v1alpha1.AccountSettings{}.EffectiveAPIURL(o.DefaultAPIURL))
	if err != nil {
		return fmt.Errorf("--allowed-api-urls: %w", err)
	}
	finalizer, err := AccountFinalizerFor(o.InstallID)
	if err != nil {
		return fmt.Errorf("--install-id: %w", err)
	}
	credentials, err := newCredentialsCache(mgr, o.Namespaces)
	if err != nil {
		return fmt.Errorf("creating the credentials Secret cache: %w", err)
	}
	inventory := NewInventory(o.Clock)
	accounts := &Accounts{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Factory: o.Factory,
		DefaultAPIURL: o.DefaultAPIURL, AllowedURLs: allowed, Wrap: o.WrapClient}
	for _, kind := range []string{v1alpha1.KindCloudflareAccount, v1alpha1.KindClusterCloudflareAcc} {
		r := &AccountReconciler{Client: mgr.GetClient(), Kind: kind, Accounts: accounts, Inventory: inventory,
			Clock: o.Clock, DriftCheckPeriod: o.DriftCheckPeriod, CredentialsRecheck: o.CredentialsRecheck, CredentialsCache: credentials,
			Finalizer: finalizer}
		if err := r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up %s controller: %w", kind, err)
		}
	}
	st := o.ServiceToken
	if st.DriftCheckPeriod == 0 {
		st.DriftCheckPeriod = o.DriftCheckPeriod
	}
	r := &ServiceTokenReconciler{
		Client: kube, APIReader: mgr.GetAPIReader(), Recorder: o.Recorder, Clock: o.Clock,
		Accounts: accounts, Inventory: inventory, Renewals: NewRenewals(o.Clock), Metrics: o.Counters, Options: st,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up ServiceToken controller: %w", err)
	}
	return nil
}
