// Package security checks the operator's permissions: the RBAC rules in
// config/ and the Helm chart are the least the manager needs, the
// namespaced install mode cannot reach Secrets outside its namespaces, and
// the roles for people give the built-in view/edit/admin what they should.
package security

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
)

// used lists every permission the manager's code exercises, and why. A rule
// granting anything else (or a wildcard) fails TestRBACIsLeastPrivilege: add
// a verb here only together with the code that needs it.
var used = map[string]map[string]string{
	"access.servicetoken.dev/servicetokens": {
		"get": "client.Get of the reconciled object", "list": "informer", "watch": "informer",
		"patch": "adding and removing the finalizer (merge patch)",
	},
	"access.servicetoken.dev/servicetokens/status":     {"patch": "status is written once per reconcile as a merge patch"},
	"access.servicetoken.dev/servicetokens/finalizers": {"update": "the Secret's ownerReference sets blockOwnerDeletion"},
	"access.servicetoken.dev/cloudflareaccounts": {
		"get": "resolving a ServiceToken's account", "list": "informer", "watch": "informer",
		"patch": "the account finalizer (merge patch)",
	},
	"access.servicetoken.dev/clustercloudflareaccounts": {
		"get": "resolving a ServiceToken's account", "list": "informer", "watch": "informer",
		"patch": "the account finalizer (merge patch)",
	},
	"access.servicetoken.dev/cloudflareaccounts/status":        {"patch": "the account's Ready condition"},
	"access.servicetoken.dev/clustercloudflareaccounts/status": {"patch": "the account's Ready condition"},
	"/secrets": {
		"get":  "credentials Secrets and foreign-Secret conflict checks (uncached reads)",
		"list": "informer of managed Secrets", "watch": "informer of managed Secrets",
		"patch":  "server-side apply of the operator's part of a Secret",
		"create": "server-side apply that creates the Secret",
		"delete": "removing the old Secret after spec.secret.name changed",
	},
	"/namespaces":                               {"get": "ClusterCloudflareAccount namespaceSelector", "list": "informer", "watch": "informer"},
	"/events":                                   {"create": "events (core/v1 fallback of the recorder)", "patch": "event series"},
	"events.k8s.io/events":                      {"create": "events", "patch": "event series"},
	"coordination.k8s.io/leases":                {"get": "leader election", "create": "leader election", "update": "leader election"},
	"authentication.k8s.io/tokenreviews":        {"create": "authenticating metrics scrapers"},
	"authorization.k8s.io/subjectaccessreviews": {"create": "authorising metrics scrapers"},
}

// usedNonResource lists the non-resource URLs a role may grant.
var usedNonResource = map[string]map[string]string{
	"/metrics": {"get": "the metrics-reader role given to Prometheus"},
}

// role is a Role or ClusterRole found in a manifest.
type role struct {
	source, kind, name, namespace string
	rules                         []rbacv1.PolicyRule
}

func repoFile(parts ...string) string {
	return filepath.Join(append([]string{testenv.RepoRoot()}, parts...)...)
}

// rolesIn parses every Role and ClusterRole the operator uses out of a
// multi-document YAML stream.
func rolesIn(t *testing.T, source string, data []byte) []role {
	t.Helper()
	var out []role
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string            `json:"name"`
				Namespace string            `json:"namespace"`
				Labels    map[string]string `json:"labels"`
			} `json:"metadata"`
			Rules []rbacv1.PolicyRule `json:"rules"`
		}
		if strings.TrimSpace(doc) == "" {
			continue
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		if aggregated(head.Metadata.Labels) {
			continue // a role for people (TestAggregatedRoles), not the operator's
		}
		if head.Kind == "Role" || head.Kind == "ClusterRole" {
			out = append(out, role{source: source, kind: head.Kind, name: head.Metadata.Name, namespace: head.Metadata.Namespace, rules: head.Rules})
		}
	}
	return out
}

// aggregated reports whether labels add a ClusterRole to a built-in role for
// people (view, edit, admin).
func aggregated(labels map[string]string) bool {
	for k := range labels {
		if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
			return true
		}
	}
	return false
}

// violations lists every wildcard and every verb no code uses.
func violations(roles []role) []string {
	var out []string
	for _, r := range roles {
		where := fmt.Sprintf("%s: %s %s", r.source, r.kind, r.name)
		for _, rule := range r.rules {
			for _, v := range rule.Verbs {
				if v == "*" {
					out = append(out, where+": wildcard verb")
				}
			}
			for _, u := range rule.NonResourceURLs {
				for _, v := range rule.Verbs {
					if _, ok := usedNonResource[u][v]; !ok {
						out = append(out, fmt.Sprintf("%s: %s on non-resource URL %s is not used", where, v, u))
					}
				}
			}
			if len(rule.ResourceNames) > 0 {
				continue // narrower than the resource; still checked below
			}
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					if g == "*" || res == "*" || strings.Contains(res, "*") {
						out = append(out, fmt.Sprintf("%s: wildcard group or resource %q/%q", where, g, res))
						continue
					}
					for _, v := range rule.Verbs {
						if v == "*" {
							continue
						}
						if _, ok := used[g+"/"+res][v]; !ok {
							out = append(out, fmt.Sprintf("%s: %s on %s/%s is not used by the manager", where, v, g, res))
						}
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestRBACIsLeastPrivilege(t *testing.T) {
	files, err := filepath.Glob(repoFile("config", "rbac", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no RBAC manifests in config/rbac: %v", err)
	}
	var roles []role
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		roles = append(roles, rolesIn(t, "config/rbac/"+filepath.Base(f), b)...)
	}
	if len(roles) < 2 {
		t.Fatalf("found only %d roles in config/rbac", len(roles))
	}
	for _, v := range violations(roles) {
		t.Error(v)
	}
	// The manager role must keep what the code needs (a missing verb would
	// make the operator fail in a real install, not in envtest as admin).
	manager := map[string]bool{}
	for _, r := range roles {
		if r.name != "manager-role" {
			continue
		}
		for _, rule := range r.rules {
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						manager[g+"/"+res+":"+v] = true
					}
				}
			}
		}
	}
	for _, need := range []string{"/secrets:create", "/secrets:patch", "/secrets:get", "access.servicetoken.dev/servicetokens/status:patch",
		"access.servicetoken.dev/servicetokens:patch", "access.servicetoken.dev/servicetokens/finalizers:update", "events.k8s.io/events:create"} {
		if !manager[need] {
			t.Errorf("manager-role lacks %s, which the controllers use", need)
		}
	}
}

func TestRBACViolationsAreFound(t *testing.T) {
	bad := []role{{source: "fixture", kind: "ClusterRole", name: "x", rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "deletecollection"}},
		{APIGroups: []string{"*"}, Resources: []string{"pods"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"*"}},
	}}}
	got := strings.Join(violations(bad), "\n")
	for _, want := range []string{"deletecollection on /secrets", `wildcard group or resource "*"/"pods"`, "wildcard verb"} {
		if !strings.Contains(got, want) {
			t.Errorf("violations miss %q:\n%s", want, got)
		}
	}
}

// TestChartRBACIsLeastPrivilege renders the Helm chart (both RBAC scopes) when
// helm is installed in bin/ and applies the same check.
func TestChartRBACIsLeastPrivilege(t *testing.T) {
	chart := repoFile("charts", "servicetoken-operator")
	if dir := os.Getenv("SECURITY_CHART_DIR"); dir != "" { // e.g. a copy regenerated with make chart-rbac CHART_DIR=...
		chart = dir
	}
	if _, err := os.Stat(filepath.Join(chart, "templates")); err != nil {
		t.Skip("no chart templates yet")
	}
	helm := helmBin(t)
	if helm == "" {
		t.Skip("helm not found in bin/: run `make chart-tools`")
	}
	for name, args := range map[string][]string{
		"cluster":    nil,
		"namespaced": {"--set", "rbac.scope=namespaced", "--set", "watchNamespaces={team-a,team-b}"},
	} {
		roles := rolesIn(t, "chart ("+name+")", helmTemplate(t, helm, chart, args...))
		if len(roles) == 0 {
			t.Fatalf("chart (%s) renders no roles", name)
		}
		for _, v := range violations(roles) {
			t.Error(v)
		}
		if name == "namespaced" {
			for _, r := range roles {
				for _, rule := range r.rules {
					if r.kind == "ClusterRole" && contains(rule.Resources, "secrets") {
						t.Errorf("namespaced mode: ClusterRole %s grants Secrets in every namespace", r.name)
					}
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// helmBin returns helm from bin/, or "" without it (a failure under CI=true).
func helmBin(t *testing.T) string {
	t.Helper()
	helms, _ := filepath.Glob(repoFile("bin", "helm-*"))
	if len(helms) == 0 {
		if testenv.InCI() {
			t.Fatal("helm not found in bin/ (make chart-tools)")
		}
		return ""
	}
	return helms[0]
}

// helmTemplate renders the chart as release "st" in servicetoken-system.
func helmTemplate(t *testing.T, helm, chart string, args ...string) []byte {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helm, append([]string{"template", "st", chart, "--namespace", "servicetoken-system"}, args...)...)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}
