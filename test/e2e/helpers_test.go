package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

var repoRoot = testenv.RepoRoot()

func root(parts ...string) string { return filepath.Join(append([]string{repoRoot}, parts...)...) }

// skipOrFail skips with a hint, or fails under CI=true where nothing may be
// silently left out.
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if testenv.InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg + " (a failure under CI=true)")
}

// tool is a pinned tool in bin/, <name>-<version> with the version from
// hack/mk/chart.mk (where `make chart-tools` installs it).
func tool(t *testing.T, name, versionVar string) string {
	t.Helper()
	mk, err := os.ReadFile(root("hack", "mk", "chart.mk"))
	if err != nil {
		skipOrFail(t, fmt.Sprintf("hack/mk/chart.mk is missing (%v): the chart tooling is not in this tree", err))
	}
	m := regexp.MustCompile(`(?m)^` + versionVar + `\s*\?=\s*(\S+)`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("hack/mk/chart.mk sets no %s", versionVar)
	}
	path := root("bin", name+"-"+string(m[1]))
	if _, err := os.Stat(path); err != nil {
		skipOrFail(t, fmt.Sprintf("%s %s not found at %s: run `make chart-tools` to install it", name, m[1], path))
	}
	return path
}

// run runs a tool and returns its stdout; stderr goes into the error.
func run(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// parseObjects splits a multi-document YAML stream into objects.
func parseObjects(stream string) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading YAML stream: %w", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("parsing document: %w\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

func describe(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + " " + u.GetName()
	}
	return u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
}

// applyOrder puts what others depend on first: namespaces, CRDs, service
// accounts and RBAC, then the rest.
func applyOrder(kind string) int {
	switch kind {
	case "Namespace":
		return 0
	case "CustomResourceDefinition":
		return 1
	case "ServiceAccount":
		return 2
	case "ClusterRole", "Role":
		return 3
	case "ClusterRoleBinding", "RoleBinding":
		return 4
	}
	return 5
}

// applyAll server-side applies the objects (the way `kubectl apply
// --server-side` installs them). Pods are skipped: there is no kubelet; the
// Deployment object itself is applied (nothing runs it: no
// deployment controller, no scheduler).
func applyAll(ctx context.Context, c client.Client, objs []*unstructured.Unstructured) ([]string, error) {
	sorted := append([]*unstructured.Unstructured(nil), objs...)
	sort.SliceStable(sorted, func(i, j int) bool { return applyOrder(sorted[i].GetKind()) < applyOrder(sorted[j].GetKind()) })
	var applied []string
	for _, u := range sorted {
		if u.GetKind() == "Pod" {
			continue
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()),
			client.FieldOwner("servicetoken-e2e"), client.ForceOwnership); err != nil {
			return applied, fmt.Errorf("applying %s: %w", describe(u), err)
		}
		applied = append(applied, describe(u))
	}
	return applied, nil
}

// theDeployment returns the one manager Deployment among the objects.
func theDeployment(objs []*unstructured.Unstructured) (*appsv1.Deployment, error) {
	var found []*appsv1.Deployment
	for _, u := range objs {
		if u.GetKind() != "Deployment" {
			continue
		}
		raw, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		d := &appsv1.Deployment{}
		if err := yaml.UnmarshalStrict(raw, d); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", describe(u), err)
		}
		found = append(found, d)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("want exactly one Deployment, got %d", len(found))
	}
	return found[0], nil
}

// restrictedViolations checks a pod template against the "restricted" Pod
// Security Standard at its latest version, with the checks of the API
// server's PodSecurity admission. Empty means allowed.
func restrictedViolations(tmpl *corev1.PodTemplateSpec) (string, error) {
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return "", err
	}
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	res := policy.AggregateCheckResults(ev.EvaluatePod(lv, &tmpl.ObjectMeta, &tmpl.Spec))
	if res.Allowed {
		return "", nil
	}
	var parts []string
	for i, r := range res.ForbiddenReasons {
		parts = append(parts, r+" ("+res.ForbiddenDetails[i]+")")
	}
	return strings.Join(parts, "; "), nil
}

// managerArgs are the manager container's args as the Deployment has them,
// minus the listen addresses: harness.StartManager binds metrics and probes
// to port 0 (several managers share this machine). In a pod, leader election
// without --leader-election-namespace uses the pod's namespace (read from
// the mounted ServiceAccount); out of cluster that is made explicit.
func managerArgs(d *appsv1.Deployment) ([]string, error) {
	var mgr *corev1.Container
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == "manager" || len(d.Spec.Template.Spec.Containers) == 1 {
			mgr = c
		}
	}
	if mgr == nil {
		return nil, errors.New("the Deployment has no manager container")
	}
	var out []string
	var elect, electionNS bool
	for _, a := range append(append([]string(nil), mgr.Command[min(1, len(mgr.Command)):]...), mgr.Args...) {
		if strings.HasPrefix(a, "--metrics-bind-address") || strings.HasPrefix(a, "--health-probe-bind-address") {
			continue
		}
		if strings.HasPrefix(a, "--leader-election-namespace") {
			electionNS = true
		}
		if a == "--leader-elect" || a == "--leader-elect=true" {
			elect = true
		}
		out = append(out, a)
	}
	if elect && !electionNS {
		out = append(out, "--leader-election-namespace="+d.Namespace)
	}
	return out, nil
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as the
// ServiceAccount with a bound token from the TokenRequest API, as a pod of
// the Deployment would.
func serviceAccountKubeconfig(ctx context.Context, cp *harness.ControlPlane, namespace, name, path string) error {
	token, err := serviceAccountToken(ctx, cp, namespace, name)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cp.Config.Host, CertificateAuthorityData: cp.Config.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: name, Namespace: namespace}
	cfg.CurrentContext = "e2e"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// serviceAccountToken gets a bound token for the ServiceAccount from the
// TokenRequest API, as the kubelet does for a pod.
func serviceAccountToken(ctx context.Context, cp *harness.ControlPlane, namespace, name string) (string, error) {
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return "", err
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// scrape GETs the manager's secure metrics endpoint with a ServiceAccount's
// token, as Prometheus does (skipping verification of the manager's
// self-signed certificate), and returns the status code and body.
func scrape(ctx context.Context, cp *harness.ControlPlane, url, namespace, name string) (int, string, error) {
	token, err := serviceAccountToken(ctx, cp, namespace, name)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the manager's certificate is self-signed, as in the ServiceMonitor
	}}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }() // a read-only GET: nothing to lose
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// forbiddenLines returns the manager's log lines that report an
// authorization failure.
func forbiddenLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(strings.ToLower(l), "forbidden") {
			lines = append(lines, l)
		}
	}
	return lines
}

// readSample decodes a file of config/samples into obj, strictly.
func readSample(t *testing.T, file string, obj any) {
	t.Helper()
	b, err := os.ReadFile(root("config", "samples", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, obj); err != nil {
		t.Fatalf("config/samples/%s: %v", file, err)
	}
}

// rbacIsEnforced checks that the kubeconfig's identity is subject to RBAC:
// it may not list Pods, which no install grants. Otherwise the scenario
// would prove nothing about the install's RBAC.
func rbacIsEnforced(ctx context.Context, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		return fmt.Errorf("listing Pods as the ServiceAccount: want Forbidden (RBAC enforced), got %v", err)
	}
	return nil
}

// leaderElection reports whether the args turn leader election on.
func leaderElection(args []string) bool {
	for _, a := range args {
		if a == "--leader-elect" || a == "--leader-elect=true" {
			return true
		}
	}
	return false
}
