package security

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

const (
	nsAccountID = "0123456789abcdef0123456789abcdef"
	nsAPIToken  = "namespaced-test-api-token-5d1c9a"
)

// TestNamespacedModeCannotTouchOtherNamespaces runs the real manager binary
// with --watch-namespaces=a,b as a ServiceAccount (token from the TokenRequest
// API) whose RBAC is config/rbac/role.yaml split into Roles in a and b plus a
// ClusterRole for the cluster-scoped kinds only. It works in a and b, and
// leaves namespace c alone: a foreign Secret there is untouched, nothing is
// created there, and the API server denies the ServiceAccount every Secret
// verb in c.
func TestNamespacedModeCannotTouchOtherNamespaces(t *testing.T) {
	if _, err := testenv.AssetsDir(); err != nil && !testenv.InCI() {
		t.Skip(err)
	}
	crlog.SetLogger(logr.Discard())
	ctx := context.Background()
	dir := t.TempDir()
	manager, cfsim, err := harness.Binaries(dir)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	sim, err := harness.StartSim(cfsim, dir, "--accounts="+nsAccountID, "--api-tokens="+nsAPIToken)
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	c := cp.Client
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"a", "b", "c", "operator"} {
		must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	must(c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "operator", Name: "manager"}}))
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "operator", Name: "manager"}}

	// Split the manager's rules by scope, as the namespaced install does.
	b, err := os.ReadFile(repoFile("config", "rbac", "role.yaml"))
	must(err)
	var cr rbacv1.ClusterRole
	must(yaml.Unmarshal(b, &cr))
	var clusterRules, nsRules []rbacv1.PolicyRule
	for _, rule := range cr.Rules {
		var cluster, namespaced []string
		for _, res := range rule.Resources {
			base := strings.Split(res, "/")[0]
			if base == "namespaces" || base == "clustercloudflareaccounts" {
				cluster = append(cluster, res)
			} else {
				namespaced = append(namespaced, res)
			}
		}
		if len(cluster) > 0 {
			r := rule
			r.Resources = cluster
			clusterRules = append(clusterRules, r)
		}
		if len(namespaced) > 0 {
			r := rule
			r.Resources = namespaced
			nsRules = append(nsRules, r)
		}
	}
	must(c.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "manager-cluster"}, Rules: clusterRules}))
	must(c.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "manager-cluster"}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "manager-cluster"}}))
	for _, ns := range []string{"a", "b"} {
		must(c.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manager"}, Rules: nsRules}))
		must(c.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manager"}, Subjects: subject,
			RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "manager"}}))
	}

	// A kubeconfig with a bound ServiceAccount token (TokenRequest API).
	cs, err := kubernetes.NewForConfig(cp.Config)
	must(err)
	tr, err := cs.CoreV1().ServiceAccounts("operator").CreateToken(ctx, "manager",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	must(err)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["env"] = &clientcmdapi.Cluster{Server: cp.Config.Host, CertificateAuthorityData: cp.Config.CAData}
	kc.AuthInfos["manager"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["manager"] = &clientcmdapi.Context{Cluster: "env", AuthInfo: "manager"}
	kc.CurrentContext = "manager"
	kubeconfig := filepath.Join(dir, "manager.kubeconfig")
	must(clientcmd.WriteToFile(*kc, kubeconfig))

	// Every namespace gets the same setup; only a and b are watched.
	for _, ns := range []string{"a", "b", "c"} {
		must(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf-api",
			Labels: map[string]string{v1alpha1.LabelCredentials: "true"}}, StringData: map[string]string{"apiToken": nsAPIToken}}))
		must(c.Create(ctx, &v1alpha1.CloudflareAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf"},
			Spec: v1alpha1.CloudflareAccountSpec{AccountSettings: v1alpha1.AccountSettings{AccountID: nsAccountID, APIURL: sim.APIURL()},
				CredentialsRef: v1alpha1.CredentialsReference{Name: "cf-api"}}}))
		must(c.Create(ctx, &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
			Spec: v1alpha1.ServiceTokenSpec{AccountRef: v1alpha1.AccountReference{Name: "cf"}}}))
	}
	victim := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "c", Name: "victim"}, StringData: map[string]string{"password": "keep-me"}}
	must(c.Create(ctx, victim))
	must(c.Create(ctx, &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: "c", Name: "grab"},
		Spec: v1alpha1.ServiceTokenSpec{AccountRef: v1alpha1.AccountReference{Name: "cf"}, Secret: &v1alpha1.SecretTemplate{Name: "victim"}}}))

	mgr, err := harness.StartManager(manager, kubeconfig, dir, "manager", "--watch-namespaces=a,b", harness.AllowFlag(sim))
	must(err)
	defer mgr.Stop()

	for _, ns := range []string{"a", "b"} {
		st := &v1alpha1.ServiceToken{}
		if err := harness.WaitFor(90*time.Second, func() bool {
			return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, st) == nil &&
				meta.IsStatusConditionTrue(st.Status.Conditions, v1alpha1.ConditionReady)
		}); err != nil {
			t.Fatalf("ServiceToken %s/app not Ready with namespaced RBAC: %v\n%s", ns, err, tail(mgr.Output(), 40))
		}
		s := &corev1.Secret{}
		must(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, s))
		if ok, err := sim.Verify(string(s.Data["client_id"]), string(s.Data["client_secret"])); err != nil || !ok {
			t.Fatalf("Secret %s/app does not verify (err %v)", ns, err)
		}
	}
	// Give the manager time to (wrongly) act on c, then look.
	time.Sleep(5 * time.Second)
	after := &corev1.Secret{}
	must(c.Get(ctx, client.ObjectKeyFromObject(victim), after))
	if after.ResourceVersion != victim.ResourceVersion || string(after.Data["password"]) != "keep-me" || len(after.OwnerReferences) > 0 {
		t.Error("the foreign Secret c/victim was changed")
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "c", Name: "app"}, &corev1.Secret{}); err == nil {
		t.Error("a Secret was created in the unwatched namespace c")
	}
	for _, name := range []string{"app", "grab"} {
		st := &v1alpha1.ServiceToken{}
		must(c.Get(ctx, client.ObjectKey{Namespace: "c", Name: name}, st))
		if len(st.Finalizers) > 0 || len(st.Status.Conditions) > 0 {
			t.Errorf("ServiceToken c/%s was acted on", name)
		}
	}
	tokens, err := sim.Tokens()
	must(err)
	if len(tokens) != 2 {
		t.Errorf("Cloudflare holds %d tokens, want 2 (a/app and b/app only)", len(tokens))
	}
	// The API server itself refuses every Secret verb in c, and cluster-wide.
	user := "system:serviceaccount:operator:manager"
	for _, ns := range []string{"c", "operator", ""} {
		for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user,
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:operator", "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "secrets"}}}
			must(c.Create(ctx, sar))
			if sar.Status.Allowed {
				t.Errorf("the namespaced manager may %s Secrets in %q", verb, orAll(ns))
			}
		}
	}
	if strings.Contains(mgr.Output(), nsAPIToken) {
		t.Error("the manager logged the API token")
	}
}

func orAll(ns string) string {
	if ns == "" {
		return "all namespaces"
	}
	return ns
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprint(strings.Join(lines, "\n"))
}

func ptr[T any](v T) *T { return &v }
