package security

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

// access is one question put to the API server's authorizer.
type access struct {
	user, namespace, verb, resource, subresource string
	allowed                                      bool
}

func (a access) String() string {
	res := a.resource
	if a.subresource != "" {
		res += "/" + a.subresource
	}
	return fmt.Sprintf("%s %s %s in %q", a.user, a.verb, res, a.namespace)
}

// TestAggregatedRoles installs the installer's and the chart's roles for
// people on a real API server with kube-controller-manager's
// clusterrole-aggregation controller, binds users to the built-in view, edit
// and admin roles, and asks the authorizer (SubjectAccessReview) what each
// may do: view reads ServiceTokens and CloudflareAccounts, edit and admin
// also write them, nobody writes /status or ClusterCloudflareAccounts.
// Without the roles none of it is allowed, so the aggregation is what grants.
func TestAggregatedRoles(t *testing.T) {
	if _, err := testenv.AssetsDir(); err != nil && !testenv.InCI() {
		t.Skip(err)
	}
	sources := map[string][]byte{}
	var err error
	if sources["config/rbac/aggregate_roles.yaml"], err = os.ReadFile(repoFile("config", "rbac", "aggregate_roles.yaml")); err != nil {
		t.Fatal(err)
	}
	if helm := helmBin(t); helm != "" {
		sources["chart"] = helmTemplate(t, helm, repoFile("charts", "servicetoken-operator"), "--show-only", "templates/aggregate-roles.yaml")
	} else {
		t.Log("helm not found in bin/: checking the installer's roles only (make chart-tools)")
	}

	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{RoleAggregation: true, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	ctx := context.Background()
	c := cp.Client
	for _, b := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "viewer"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}, Subjects: []rbacv1.Subject{user("viewer")}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "editor"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"}, Subjects: []rbacv1.Subject{user("editor")}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "admin"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"}, Subjects: []rbacv1.Subject{user("admin")}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "cluster-viewer"},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"}, Subjects: []rbacv1.Subject{user("cluster-viewer")}},
	} {
		if err := c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
	}

	// Granted once the roles are in; every other line is denied either way.
	var granted, denied []access
	add := func(allowed bool, users []string, ns string, verbs []string, resource, sub string) {
		for _, u := range users {
			for _, v := range verbs {
				a := access{user: u, namespace: ns, verb: v, resource: resource, subresource: sub, allowed: allowed}
				if allowed {
					granted = append(granted, a)
				} else {
					denied = append(denied, a)
				}
			}
		}
	}
	read := []string{"get", "list", "watch"}
	write := []string{"create", "update", "patch", "delete", "deletecollection"}
	for _, res := range []string{"servicetokens", "cloudflareaccounts"} {
		add(true, []string{"viewer", "editor", "admin"}, "team-a", read, res, "")
		add(true, []string{"cluster-viewer"}, "", read, res, "")
		add(true, []string{"editor", "admin"}, "team-a", write, res, "")
		add(false, []string{"viewer"}, "team-a", write, res, "")
		add(false, []string{"viewer", "editor", "admin"}, "team-b", read, res, "") // bound in team-a only
		add(false, []string{"editor", "admin"}, "team-a", []string{"update", "patch"}, res, "status")
		add(false, []string{"viewer"}, "team-a", []string{"get"}, res, "status")
	}
	add(false, []string{"viewer", "editor", "admin", "cluster-viewer"}, "", append(read, write...), "clustercloudflareaccounts", "")

	check := func(want []access) []string {
		var wrong []string
		for _, a := range want {
			if got := allowed(ctx, t, c, a); got != a.allowed {
				wrong = append(wrong, fmt.Sprintf("%s: allowed=%v, want %v", a, got, a.allowed))
			}
		}
		return wrong
	}
	noGrants := make([]access, len(granted))
	for i, a := range granted {
		a.allowed = false
		noGrants[i] = a
	}
	if wrong := check(append(noGrants, denied...)); len(wrong) > 0 {
		t.Fatalf("before any role is installed:\n%s", strings.Join(wrong, "\n"))
	}

	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			roles := parseClusterRoles(t, src)
			for _, r := range roles {
				if err := c.Create(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			var wrong []string
			if err := harness.WaitFor(30*time.Second, func() bool { wrong = check(append(granted, denied...)); return len(wrong) == 0 }); err != nil {
				t.Errorf("with the roles of %s (%v):\n%s", name, err, strings.Join(wrong, "\n"))
			}
			for _, r := range roles {
				if err := c.Delete(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			// The next source starts from nothing granted again.
			if err := harness.WaitFor(30*time.Second, func() bool { wrong = check(noGrants); return len(wrong) == 0 }); err != nil {
				t.Fatalf("after deleting the roles of %s:\n%s", name, strings.Join(wrong, "\n"))
			}
		})
	}
}

func user(name string) rbacv1.Subject {
	return rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: "User", Name: name}
}

// allowed asks the API server whether a.user may do a.
func allowed(ctx context.Context, t *testing.T, c client.Client, a access) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: a.user, Groups: []string{"system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: a.namespace, Verb: a.verb,
			Group: v1alpha1.GroupVersion.Group, Resource: a.resource, Subresource: a.subresource}}}
	if err := c.Create(ctx, sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// parseClusterRoles decodes the ClusterRoles of a YAML stream.
func parseClusterRoles(t *testing.T, src []byte) []*rbacv1.ClusterRole {
	t.Helper()
	var out []*rbacv1.ClusterRole
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(src), -1) {
		r := &rbacv1.ClusterRole{}
		if err := yaml.Unmarshal([]byte(doc), r); err != nil {
			t.Fatal(err)
		}
		if r.Kind == "ClusterRole" {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		t.Fatal("no ClusterRoles")
	}
	return out
}
