// Package chart tests the Helm chart (charts/servicetoken-operator) and the
// kustomize install (config/default, rendered by `make build-installer`):
// what they render, not a running cluster. helm and kustomize come from bin/,
// where `make chart-tools` installs the versions pinned in hack/mk/chart.mk.
package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

const releaseNamespace = "servicetoken-system"

// TestMain points helm's config, cache and data at a scratch directory, so the
// tests neither read nor write the user's helm setup.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "chart-test-helm-")
	if err != nil {
		panic(err)
	}
	for _, v := range []string{"HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"} {
		if err := os.Setenv(v, filepath.Join(home, strings.ToLower(v))); err != nil {
			panic(err)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(home)
	os.Exit(code)
}

// repoRoot is the repository's top directory (the tests run in test/chart).
var repoRoot = func() string {
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return dir
}()

func root(parts ...string) string { return filepath.Join(append([]string{repoRoot}, parts...)...) }

var chartDir = root("charts", "servicetoken-operator")

// tool returns the path of a pinned tool in bin/, named <name>-<version> with
// the version from hack/mk/chart.mk. Missing, the test skips with a hint,
// or fails under CI=true.
func tool(t *testing.T, name, versionVar string) string {
	t.Helper()
	mk, err := os.ReadFile(root("hack", "mk", "chart.mk"))
	if err != nil {
		t.Fatalf("reading hack/mk/chart.mk: %v", err)
	}
	m := regexp.MustCompile(`(?m)^` + versionVar + `\s*\?=\s*(\S+)`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("hack/mk/chart.mk sets no %s", versionVar)
	}
	path := root("bin", name+"-"+string(m[1]))
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("%s %s not found at %s: run `make chart-tools` to install it", name, m[1], path)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (a failure under CI=true)")
	}
	return path
}

func helmBin(t *testing.T) string { return tool(t, "helm", "HELM_VERSION") }

func kustomizeBin(t *testing.T) string { return tool(t, "kustomize", "KUSTOMIZE_VERSION") }

func run(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// helmTemplate renders the chart as release "st" in releaseNamespace with the
// given --set flags (or any other helm template flags).
func helmTemplate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(helmBin(t), append([]string{"template", "st", chartDir, "--namespace", releaseNamespace}, args...)...)
}

// set turns key=value pairs into helm --set flags.
func set(kv ...string) []string {
	var out []string
	for _, s := range kv {
		out = append(out, "--set", s)
	}
	return out
}

// object is one rendered document: its raw YAML and its generic form.
type object struct {
	raw []byte
	u   *unstructured.Unstructured
}

func (o object) String() string {
	return fmt.Sprintf("%s %s/%s", o.u.GetKind(), o.u.GetNamespace(), o.u.GetName())
}

// decode strictly decodes the document into a typed object: a field the
// API type does not have (a typo in a template) is an error.
func (o object) decode(into any) error {
	if err := yaml.UnmarshalStrict(o.raw, into); err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	return nil
}

// parse splits a multi-document YAML stream into objects, dropping empty ones.
func parse(t *testing.T, stream string) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	var out []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading YAML stream: %v", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("parsing document: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, object{raw: doc, u: &unstructured.Unstructured{Object: m}})
	}
}

// render is helmTemplate + parse, failing the test on a render error.
func render(t *testing.T, args ...string) []object {
	t.Helper()
	out, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, out)
}

// renderKustomize renders config/default as `make build-installer` does.
func renderKustomize(t *testing.T) []object {
	t.Helper()
	out, err := run(kustomizeBin(t), "build", root("config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, out)
}

func ofKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.u.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func deployments(t *testing.T, objs []object) []appsv1.Deployment {
	t.Helper()
	var out []appsv1.Deployment
	for _, o := range ofKind(objs, "Deployment") {
		var d appsv1.Deployment
		if err := o.decode(&d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func crds(t *testing.T, objs []object) map[string]apiextv1.CustomResourceDefinition {
	t.Helper()
	out := map[string]apiextv1.CustomResourceDefinition{}
	for _, o := range ofKind(objs, "CustomResourceDefinition") {
		var c apiextv1.CustomResourceDefinition
		if err := o.decode(&c); err != nil {
			t.Fatal(err)
		}
		out[c.Name] = c
	}
	return out
}

// configCRDs reads config/crd/bases, what `make manifests` generates.
func configCRDs(t *testing.T) map[string]apiextv1.CustomResourceDefinition {
	t.Helper()
	files, err := filepath.Glob(root("config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	out := map[string]apiextv1.CustomResourceDefinition{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c apiextv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(src, &c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[c.Name] = c
	}
	return out
}

// A permission: one verb on one resource (or non-resource URL) of one group.
type perm struct{ group, resource, verb string }

func (p perm) String() string { return fmt.Sprintf("%s/%s:%s", p.group, p.resource, p.verb) }

// perms flattens rules into single permissions. Rules with resourceNames
// would grant less than their triples say; none are expected, so they fail.
func perms(t *testing.T, where string, rules []rbacv1.PolicyRule) map[perm]bool {
	t.Helper()
	out := map[perm]bool{}
	for _, r := range rules {
		if len(r.ResourceNames) > 0 {
			t.Errorf("%s: rule %v has resourceNames; extend the test", where, r)
		}
		for _, v := range r.Verbs {
			for _, u := range r.NonResourceURLs {
				out[perm{"nonResourceURL", u, v}] = true
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					out[perm{g, res, v}] = true
				}
			}
		}
	}
	return out
}

func sortedPerms(ps map[perm]bool) []string {
	var out []string
	for p := range ps {
		out = append(out, p.String())
	}
	sort.Strings(out)
	return out
}

// managerRole reads config/rbac/role.yaml, the manager ClusterRole that
// controller-gen generates from the +kubebuilder:rbac markers.
func managerRole(t *testing.T) rbacv1.ClusterRole {
	t.Helper()
	src, err := os.ReadFile(root("config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cr rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(bytes.TrimPrefix(src, []byte("---\n")), &cr); err != nil {
		t.Fatalf("config/rbac/role.yaml: %v", err)
	}
	if len(cr.Rules) == 0 {
		t.Fatal("config/rbac/role.yaml has no rules")
	}
	return cr
}

// rolesOf returns every Role and ClusterRole rendered for the operator
// itself (the manager, leader election, metrics), keyed "Kind ns/name". The
// roles for people, aggregated into view/edit/admin, are peopleRoles'.
func rolesOf(t *testing.T, objs []object) map[string][]rbacv1.PolicyRule {
	t.Helper()
	out := map[string][]rbacv1.PolicyRule{}
	for _, o := range objs {
		if forPeople(o) {
			continue
		}
		switch o.u.GetKind() {
		case "Role":
			var r rbacv1.Role
			if err := o.decode(&r); err != nil {
				t.Fatal(err)
			}
			out[o.String()] = r.Rules
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := o.decode(&r); err != nil {
				t.Fatal(err)
			}
			out[o.String()] = r.Rules
		}
	}
	return out
}

// forPeople reports whether o is a ClusterRole that aggregates into a
// built-in role for people (view, edit, admin, OpenShift's cluster-reader).
func forPeople(o object) bool {
	if o.u.GetKind() != "ClusterRole" {
		return false
	}
	for k := range o.u.GetLabels() {
		if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
			return true
		}
	}
	return false
}

// peopleRoles returns the ClusterRoles for people, keyed by name.
func peopleRoles(t *testing.T, objs []object) map[string]rbacv1.ClusterRole {
	t.Helper()
	out := map[string]rbacv1.ClusterRole{}
	for _, o := range objs {
		if !forPeople(o) {
			continue
		}
		var r rbacv1.ClusterRole
		if err := o.decode(&r); err != nil {
			t.Fatal(err)
		}
		out[r.Name] = r
	}
	return out
}

var (
	evaluatorOnce sync.Once
	evaluator     policy.Evaluator
	evaluatorErr  error
)

// podSecurityViolations checks a pod template against the "restricted" Pod
// Security Standard at its latest version, with the checks the API server's
// PodSecurity admission runs. Empty means allowed.
func podSecurityViolations(t *testing.T, meta *corev1.PodTemplateSpec) string {
	t.Helper()
	evaluatorOnce.Do(func() { evaluator, evaluatorErr = policy.NewEvaluator(policy.DefaultChecks(), nil) })
	if evaluatorErr != nil {
		t.Fatal(evaluatorErr)
	}
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	res := policy.AggregateCheckResults(evaluator.EvaluatePod(lv, &meta.ObjectMeta, &meta.Spec))
	if res.Allowed {
		return ""
	}
	var parts []string
	for i, r := range res.ForbiddenReasons {
		parts = append(parts, r+" ("+res.ForbiddenDetails[i]+")")
	}
	return strings.Join(parts, "; ")
}

// managerFlags are the flags the manager binary defines: those in cmd/main.go
// plus controller-runtime's zap flags.
func managerFlags(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(root("cmd", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{"zap-devel": true, "zap-encoder": true, "zap-log-level": true,
		"zap-stacktrace-level": true, "zap-time-encoding": true}
	for _, m := range regexp.MustCompile(`flag\.\w+Var\([^,]+,\s*"([a-z0-9-]+)"`).FindAllSubmatch(src, -1) {
		out[string(m[1])] = true
	}
	if !out["leader-elect"] || !out["watch-namespaces"] {
		t.Fatalf("found no manager flags in cmd/main.go (got %v): update the pattern", out)
	}
	return out
}

// argMap turns ["--a=1", "--b"] into {"a": "1", "b": ""}.
func argMap(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			t.Fatalf("argument %q is not a --flag", a)
		}
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if _, dup := out[k]; dup {
			t.Fatalf("flag --%s given twice in %v", k, args)
		}
		out[k] = v
	}
	return out
}
