// Package e2e installs the operator the two ways users do — the Helm chart
// and the kustomize installer (dist/install.yaml) — onto a real
// kube-apiserver + etcd with kube-controller-manager's garbage collector
// (test/harness), runs the real manager binary out of cluster as the
// install's own ServiceAccount (so the install's RBAC is what is tested), and
// takes a ServiceToken through its life against the Cloudflare simulator:
// created, verified, rotated with a grace period, deleted and cleaned up.
//
// The control-plane binaries come from hack/setup-envtest.sh, helm and
// kustomize from `make chart-tools`. Missing, the tests skip with a hint,
// or fail under CI=true.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

const (
	systemNamespace = "servicetoken-system" // where both installs put the manager
	apiToken        = "e2e-api-token"       // the simulator's API token (not a client secret)
	waitTimeout     = 90 * time.Second
)

// The manager and cfsim binaries are built once for every test.
var (
	buildOnce            sync.Once
	buildDir             string
	managerBin, cfsimBin string
	errBuild             error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func binaries(t *testing.T) (manager, cfsim string) {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, errBuild = os.MkdirTemp("", "servicetoken-e2e-bin-"); errBuild != nil {
			return
		}
		managerBin, cfsimBin, errBuild = harness.Binaries(buildDir)
	})
	if errBuild != nil {
		t.Fatal(errBuild)
	}
	return managerBin, cfsimBin
}

// requireControlPlane skips (fails under CI=true) without kube-apiserver,
// etcd and kube-controller-manager.
func requireControlPlane(t *testing.T) {
	t.Helper()
	dir, err := testenv.AssetsDir()
	if err != nil {
		skipOrFail(t, err.Error())
	}
	if _, err := os.Stat(filepath.Join(dir, "kube-controller-manager")); err != nil {
		skipOrFail(t, fmt.Sprintf("no kube-controller-manager in %s (garbage collection needs it): run hack/setup-envtest.sh", dir))
	}
}

// TestHelmChart installs the rendered Helm chart and runs the scenario as
// the chart's ServiceAccount.
func TestHelmChart(t *testing.T) {
	requireControlPlane(t)
	helm := tool(t, "helm", "HELM_VERSION")
	chart := root("charts", "servicetoken-operator")
	const release = "st"

	t.Run("helm lint", func(t *testing.T) {
		if out, err := run(helm, "lint", "--strict", chart, "--namespace", systemNamespace); err != nil {
			t.Fatalf("helm lint failed: %v\n%s", err, out)
		}
	})
	// Prometheus' ServiceAccount, as a user names it, may read the metrics.
	out, err := run(helm, "template", release, chart, "--namespace", systemNamespace,
		"--set", "image.repository=example.invalid/servicetoken-operator", "--set", "image.tag=e2e",
		"--set", "metrics.reader.serviceAccounts[0].name="+prometheus.Name,
		"--set", "metrics.reader.serviceAccounts[0].namespace="+prometheus.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := parseObjects(out)
	if err != nil {
		t.Fatal(err)
	}
	// helm does not create the release namespace; `helm install
	// --create-namespace` would.
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(systemNamespace)
	installAndRun(t, append([]*unstructured.Unstructured{ns}, objs...), &prometheus)
}

// prometheus is the ServiceAccount the Helm test lets scrape the metrics.
var prometheus = types.NamespacedName{Namespace: "monitoring", Name: "prometheus-k8s"}

// TestKustomizeInstaller installs config/default rendered by the pinned
// kustomize, as `make build-installer` writes it to dist/install.yaml, and
// runs the scenario as the installer's ServiceAccount.
func TestKustomizeInstaller(t *testing.T) {
	requireControlPlane(t)
	kustomize := tool(t, "kustomize", "KUSTOMIZE_VERSION")
	out, err := run(kustomize, "build", root("config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := parseObjects(out)
	if err != nil {
		t.Fatal(err)
	}
	installAndRun(t, objs, nil)
}

// installAndRun starts a fresh control plane, applies the install, checks
// the Deployment's pod template, starts the manager as the Deployment's
// ServiceAccount and runs the scenario. With scraper, it then scrapes the
// metrics as that ServiceAccount, which the install must have let in.
func installAndRun(t *testing.T, objs []*unstructured.Unstructured, scraper *types.NamespacedName) {
	g := NewWithT(t)
	ctx := context.Background()
	manager, cfsim := binaries(t)

	dep, err := theDeployment(objs)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(dep.Namespace).To(Equal(systemNamespace))
	t.Run("pod template meets the restricted Pod Security Standard", func(t *testing.T) {
		v, err := restrictedViolations(&dep.Spec.Template)
		if err != nil {
			t.Fatal(err)
		}
		if v != "" {
			t.Errorf("Deployment %s violates restricted:latest: %s", dep.Name, v)
		}
	})
	sa := dep.Spec.Template.Spec.ServiceAccountName
	g.Expect(sa).NotTo(BeEmpty(), "the Deployment names its ServiceAccount")
	args, err := managerArgs(dep)
	g.Expect(err).NotTo(HaveOccurred())

	dir := t.TempDir()
	start := time.Now()
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{GarbageCollector: true, Dir: dir})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(cp.Stop)
	t.Logf("control plane up in %s", time.Since(start).Round(time.Millisecond))

	applied, err := applyAll(ctx, cp.Client, objs)
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("applied %d objects: %s", len(applied), strings.Join(applied, ", "))

	kubeconfig := filepath.Join(dir, "manager.kubeconfig")
	g.Expect(serviceAccountKubeconfig(ctx, cp, systemNamespace, sa, kubeconfig)).To(Succeed())
	g.Expect(rbacIsEnforced(ctx, kubeconfig)).To(Succeed())

	// The CloudflareAccount sample's account ID is the one the simulator knows.
	var acct v1alpha1.CloudflareAccount
	readSample(t, "access_v1alpha1_cloudflareaccount.yaml", &acct)
	sim, err := harness.StartSim(cfsim, dir, "--accounts="+acct.Spec.AccountID, "--api-tokens="+apiToken)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(sim.Stop)

	t.Logf("manager args (from the Deployment): %s", strings.Join(args, " "))
	// The install allows Cloudflare's API only; the last flag given wins.
	args = append(args, harness.AllowFlag(sim))
	var metricsURL string
	if scraper != nil {
		port, err := harness.FreePort()
		g.Expect(err).NotTo(HaveOccurred())
		args = append(args, fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port))
		metricsURL = fmt.Sprintf("https://127.0.0.1:%d/metrics", port)
	}
	mgr, err := harness.StartManager(manager, kubeconfig, dir, "manager", args...)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(mgr.Stop)

	s := &scenario{t: t, g: g, c: cp.Client, sim: sim, mgr: mgr, acct: acct, namespace: "e2e-apps"}
	s.run(ctx)
	if scraper != nil {
		t.Run("metrics scraped as "+scraper.String(), func(t *testing.T) {
			s := *s
			s.t, s.g = t, NewWithT(t)
			s.scrapeMetrics(ctx, cp, metricsURL, *scraper)
		})
	}
	if leaderElection(args) {
		// The manager led through the install's Lease permissions.
		lease := &coordinationv1.Lease{}
		g.Expect(cp.Client.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: "servicetoken-operator.access.servicetoken.dev"}, lease)).To(Succeed())
		g.Expect(lease.Spec.HolderIdentity).NotTo(BeNil())
		g.Expect(strings.ToLower(mgr.Output())).To(ContainSubstring("successfully acquired lease"))
	}

	if lines := forbiddenLines(mgr.Output()); len(lines) > 0 {
		t.Errorf("the manager was refused by the API server (the install's RBAC is short):\n%s", strings.Join(lines, "\n"))
	}
}

// scrapeMetrics: the ServiceAccount the install binds to the metrics reader
// gets the metrics over HTTPS; another, unbound, is refused.
func (s *scenario) scrapeMetrics(ctx context.Context, cp *harness.ControlPlane, url string, scraper types.NamespacedName) {
	g := s.g
	g.Expect(cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scraper.Namespace}})).To(Succeed())
	stranger := types.NamespacedName{Namespace: scraper.Namespace, Name: "not-a-scraper"}
	for _, sa := range []types.NamespacedName{scraper, stranger} {
		g.Expect(cp.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name}})).To(Succeed())
	}
	var code int
	var body string
	var err error
	s.waitFor("a scrape of "+url+" as "+scraper.String(), func() bool {
		code, body, err = scrape(ctx, cp, url, scraper.Namespace, scraper.Name)
		return err == nil && code == http.StatusOK
	})
	// The scenario's Cloudflare calls are counted by the leader that made them.
	g.Expect(body).To(ContainSubstring("servicetoken_cloudflare_requests_total{"))
	code, _, err = scrape(ctx, cp, url, stranger.Namespace, stranger.Name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(http.StatusForbidden), "a ServiceAccount without the metrics reader role")
}

// scenario is a ServiceToken's life: created, verified, rotated, deleted.
type scenario struct {
	t         *testing.T
	g         *WithT
	c         client.Client
	sim       *harness.Sim
	mgr       *harness.Process
	acct      v1alpha1.CloudflareAccount
	namespace string
}

// waitFor polls cond until it holds. It fails at once when the manager logs
// an authorization failure or exits, with the manager's log (which never
// holds a secret) in the message.
func (s *scenario) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if lines := forbiddenLines(s.mgr.Output()); len(lines) > 0 {
			s.t.Fatalf("waiting for %s: the manager was refused by the API server (the install's RBAC is short):\n%s",
				what, strings.Join(lines, "\n"))
		}
		if s.mgr.Exited() {
			s.t.Fatalf("waiting for %s: the manager exited:\n%s", what, s.mgr.Output())
		}
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out after %s waiting for %s; manager log:\n%s", waitTimeout, what, s.mgr.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// credential reads the Secret's client ID and secret. Callers compare them;
// they never print them.
func (s *scenario) credential(name string, keys v1alpha1.SecretKeys) (id, secret string, err error) {
	sec := &corev1.Secret{}
	if err := s.c.Get(context.Background(), client.ObjectKey{Namespace: s.namespace, Name: name}, sec); err != nil {
		return "", "", err
	}
	return string(sec.Data[keys.ClientID]), string(sec.Data[keys.ClientSecret]), nil
}

func (s *scenario) verify(id, secret string) bool {
	ok, err := s.sim.Verify(id, secret)
	s.g.Expect(err).NotTo(HaveOccurred())
	return ok
}

func (s *scenario) run(ctx context.Context) {
	t, g, c := s.t, s.g, s.c
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.namespace}})).To(Succeed())

	// The credentials Secret and the two samples, pointed at the simulator.
	acct := s.acct.DeepCopy()
	acct.Namespace = s.namespace
	acct.Spec.APIURL = s.sim.APIURL()
	keyName := acct.Spec.CredentialsRef.APITokenKey
	if keyName == "" {
		keyName = v1alpha1.DefaultAPITokenKey
	}
	g.Expect(c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: acct.Spec.CredentialsRef.Name,
			Labels: map[string]string{v1alpha1.LabelCredentials: "true"}},
		StringData: map[string]string{keyName: apiToken},
	})).To(Succeed())
	g.Expect(c.Create(ctx, acct)).To(Succeed())
	st := &v1alpha1.ServiceToken{}
	readSample(t, "access_v1alpha1_servicetoken.yaml", st)
	st.Namespace = s.namespace
	g.Expect(st.Spec.AccountRef.Name).To(Equal(acct.Name), "the samples refer to each other")
	g.Expect(c.Create(ctx, st)).To(Succeed())
	secretName, keys := st.Spec.Secret.Name, v1alpha1.SecretKeys{ClientID: v1alpha1.DefaultClientIDKey, ClientSecret: v1alpha1.DefaultClientSecretKey}
	if st.Spec.Secret.Keys != nil {
		if st.Spec.Secret.Keys.ClientID != "" {
			keys.ClientID = st.Spec.Secret.Keys.ClientID
		}
		if st.Spec.Secret.Keys.ClientSecret != "" {
			keys.ClientSecret = st.Spec.Secret.Keys.ClientSecret
		}
	}
	g.Expect(secretName).NotTo(BeEmpty())

	s.waitFor("the CloudflareAccount to be Ready", func() bool {
		_ = c.Get(ctx, client.ObjectKeyFromObject(acct), acct)
		return meta.IsStatusConditionTrue(acct.Status.Conditions, v1alpha1.ConditionReady)
	})
	s.waitFor("the ServiceToken to be Ready", func() bool {
		_ = c.Get(ctx, client.ObjectKeyFromObject(st), st)
		return meta.IsStatusConditionTrue(st.Status.Conditions, v1alpha1.ConditionReady)
	})
	id, oldSecret, err := s.credential(secretName, keys)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(id).NotTo(BeEmpty(), "the Secret holds a client ID")
	g.Expect(oldSecret != "").To(BeTrue(), "the Secret holds a client secret")
	g.Expect(s.verify(id, oldSecret)).To(BeTrue(), "the Secret's credential passes Access")
	tokens, err := s.sim.Tokens()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(tokens)).To(Equal(1), "one token in Cloudflare")

	// Rotation on request: a new secret, the old one valid for the grace period.
	requested := time.Now().UTC().Format(time.RFC3339Nano)
	g.Expect(c.Get(ctx, client.ObjectKeyFromObject(st), st)).To(Succeed())
	patch := client.MergeFrom(st.DeepCopy())
	if st.Annotations == nil {
		st.Annotations = map[string]string{}
	}
	st.Annotations[v1alpha1.AnnotationRotateRequestedAt] = requested
	g.Expect(c.Patch(ctx, st, patch)).To(Succeed())
	var newSecret string
	s.waitFor("the rotated secret in the Secret", func() bool {
		_, newSecret, err = s.credential(secretName, keys)
		return err == nil && newSecret != "" && newSecret != oldSecret
	})
	s.waitFor("the rotation request to be handled and the ServiceToken Ready", func() bool {
		_ = c.Get(ctx, client.ObjectKeyFromObject(st), st)
		return st.Status.LastHandledRotateRequest == requested && meta.IsStatusConditionTrue(st.Status.Conditions, v1alpha1.ConditionReady)
	})
	newID, _, err := s.credential(secretName, keys)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(newID).To(Equal(id), "rotation keeps the client ID")
	g.Expect(s.verify(id, newSecret)).To(BeTrue(), "the new secret passes Access")
	g.Expect(s.verify(id, oldSecret)).To(BeTrue(), "the old secret still passes Access during the grace period")
	g.Expect(s.verify(id, "cfast_not-the-secret")).To(BeFalse(), "a wrong secret does not pass")

	// Deletion: the token leaves Cloudflare, the Secret is garbage-collected.
	g.Expect(c.Delete(ctx, st)).To(Succeed())
	s.waitFor("the ServiceToken to be gone (finalizer done)", func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(st), &v1alpha1.ServiceToken{}))
	})
	tokens, err = s.sim.Tokens()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(tokens)).To(BeZero(), "the token is deleted in Cloudflare") // a count: never print secrets
	g.Expect(s.verify(id, newSecret)).To(BeFalse(), "the deleted token no longer passes Access")
	s.waitFor("kube-controller-manager to garbage-collect the Secret", func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKey{Namespace: s.namespace, Name: secretName}, &corev1.Secret{}))
	})
}
