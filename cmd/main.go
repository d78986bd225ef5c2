// Command manager runs the servicetoken-operator controllers.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/controller"
	"github.com/servicetoken-operator/servicetoken-operator/internal/metrics"
	"github.com/servicetoken-operator/servicetoken-operator/internal/version"
)

var scheme = runtime.NewScheme()

// defaultGCPercent is the manager's GOGC unless the environment sets one.
const defaultGCPercent = 25

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
}

// options are the manager's flags; their names are part of the interface.
type options struct {
	metricsAddr             string
	secureMetrics           bool
	probeAddr               string
	leaderElect             bool
	leaderElectionNamespace string
	watchNamespaces         string
	maxConcurrentReconciles int
	kubeAPIQPS              float64
	kubeAPIBurst            int
	defaultAPIURL           string
	allowedAPIURLs          string
	installID               string
	driftCheckPeriod        time.Duration
	pprofAddr               string
	gracefulShutdown        time.Duration
	clusterName             string
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to (HTTPS with authn/authz unless --metrics-secure=false); 0 disables it.")
	flag.BoolVar(&o.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS, allowing only callers authorised for GET /metrics.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader so only one replica acts at a time.")
	flag.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the manager's own namespace).")
	flag.StringVar(&o.watchNamespaces, "watch-namespaces", "", "Comma-separated namespaces to watch; empty watches all.")
	flag.IntVar(&o.maxConcurrentReconciles, "max-concurrent-reconciles", 4, "ServiceTokens reconciled in parallel.")
	flag.Float64Var(&o.kubeAPIQPS, "kube-api-qps", 50, "Queries per second to the Kubernetes API.")
	flag.IntVar(&o.kubeAPIBurst, "kube-api-burst", 100, "Burst of queries to the Kubernetes API.")
	flag.StringVar(&o.defaultAPIURL, "default-api-url", v1alpha1.DefaultAPIURL, "Cloudflare API base URL for accounts without spec.apiURL.")
	flag.StringVar(&o.allowedAPIURLs, "allowed-api-urls", controller.DefaultAllowedAPIURLs,
		"Comma-separated URL prefixes accounts may send their credentials to (spec.apiURL); --default-api-url is always allowed. A prefix matches on scheme, host, port and whole path segments.")
	flag.StringVar(&o.installID, "install-id", "",
		"Tells this install from others in the cluster (the Helm chart passes its release namespace): each install keeps its own finalizer on the ClusterCloudflareAccounts its ServiceTokens use, so one never releases another's. Empty: the finalizer access.servicetoken.dev/in-use.")
	flag.DurationVar(&o.driftCheckPeriod, "drift-check-period", 10*time.Minute, "How often each account's tokens are listed to detect changes made outside the operator.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "0", "Address to serve Go's pprof profiles on (e.g. 127.0.0.1:6060), for diagnosing memory or CPU use; 0 disables it.")
	flag.DurationVar(&o.gracefulShutdown, "graceful-shutdown-timeout", 60*time.Second,
		"How long the manager waits on shutdown for work in flight; an issuance of a secret in flight runs to completion (up to 45s) so that no secret is lost. Keep the pod's terminationGracePeriodSeconds longer.")
	flag.StringVar(&o.clusterName, "cluster-name", "",
		"This cluster's name (a DNS label), put into default token names: <namespace>/<name>@<cluster>#<uid>. Set a distinct one in each cluster that shares a Cloudflare account.")
	var showVersion bool
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if showVersion {
		fmt.Println(version.Get().Line("manager"))
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if os.Getenv("GOGC") == "" {
		// The operator's pace is set by the Cloudflare API budget, not by CPU,
		// while its memory grows with the ServiceTokens it caches: collect
		// garbage at 25% heap growth instead of Go's 100%, trading a little
		// CPU for less peak heap (docs/performance.md). GOGC and GOMEMLIMIT
		// in the environment still win.
		debug.SetGCPercent(defaultGCPercent)
	}
	if o.pprofAddr == "" || o.pprofAddr == "0" {
		// Nobody can read a heap profile: stop sampling for one, which
		// keeps a record per distinct allocation stack for the process's
		// life.
		goruntime.MemProfileRate = 0
	}

	if err := run(o); err != nil {
		ctrl.Log.Error(err, "manager exited")
		os.Exit(1)
	}
}

func run(o options) error {
	log := ctrl.Log.WithName("setup")
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(o.kubeAPIQPS), o.kubeAPIBurst

	metricsOpts := metricsserver.Options{
		BindAddress:   o.metricsAddr,
		SecureServing: o.secureMetrics,
		// HTTP/2 is off: it has had request-smuggling and rapid-reset CVEs.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
	if o.secureMetrics {
		// TokenReview + SubjectAccessReview, as controller-runtime's
		// filters.WithAuthenticationAndAuthorization, without k8s.io/apiserver
		// (metricsauth.go).
		metricsOpts.FilterProvider = metricsAuthFilter
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        o.probeAddr,
		LeaderElection:                o.leaderElect,
		LeaderElectionID:              "servicetoken-operator.access.servicetoken.dev",
		LeaderElectionNamespace:       o.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controller.CacheOptions(namespaces(o.watchNamespaces)),
		PprofBindAddress:              o.pprofAddr,
		GracefulShutdownTimeout:       &o.gracefulShutdown,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready only once the informer caches have synced.
	if err := mgr.AddReadyzCheck("readyz", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informer caches not synced")
		}
		return nil
	}); err != nil {
		return err
	}
	if err := setupControllers(mgr, o); err != nil {
		return err
	}
	if err := metrics.RegisterBuildInfo(crmetrics.Registry); err != nil {
		return fmt.Errorf("registering servicetoken_build_info: %w", err)
	}
	v := version.Get()
	log.Info("starting manager", "version", v.Version, "revision", v.Revision, "goVersion", v.GoVersion, "watchNamespaces", o.watchNamespaces, "leaderElect", o.leaderElect, "clusterName", o.clusterName)
	return mgr.Start(ctrl.SetupSignalHandler())
}

// setupControllers wires the controllers, as the test suites do (controller.Setup).
func setupControllers(mgr ctrl.Manager, o options) error {
	return controller.Setup(mgr, controller.SetupOptions{
		Namespaces:    namespaces(o.watchNamespaces),
		DefaultAPIURL: o.defaultAPIURL, AllowedAPIURLs: controller.SplitAPIURLs(o.allowedAPIURLs), InstallID: o.installID,
		DriftCheckPeriod: o.driftCheckPeriod,
		ServiceToken:     controller.Options{MaxConcurrentReconciles: o.maxConcurrentReconciles, ClusterName: o.clusterName},
	})
}

// namespaces turns --watch-namespaces into cache options; nil watches all.
func namespaces(list string) map[string]cache.Config {
	if strings.TrimSpace(list) == "" {
		return nil
	}
	out := map[string]cache.Config{}
	for _, ns := range strings.Split(list, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out[ns] = cache.Config{}
		}
	}
	return out
}
