package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
)

// TestMetricsAuthFilterAgainstAPIServer runs the filter against a real API
// server: a ServiceAccount bound to a role with get on /metrics is let in,
// one without it gets 403, a made-up token 401.
func TestMetricsAuthFilterAgainstAPIServer(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip("API server not available: " + err.Error())
	}
	defer func() { _ = env.Stop() }()
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(env.Config)
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"scraper", "nobody"} {
		_, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		mustDo(err)
	}
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
	mustDo(err)
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: "default"}}}, metav1.CreateOptions{})
	mustDo(err)
	token := func(sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		mustDo(err)
		return tr.Status.Token
	}

	httpClient, err := rest.HTTPClientFor(env.Config)
	mustDo(err)
	filter, err := metricsAuthFilter(env.Config, httpClient)
	mustDo(err)
	h, err := filter(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }))
	mustDo(err)
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, c := range []struct {
		name, token, path string
		want              int
	}{
		{"allowed", token("scraper"), "/metrics", http.StatusOK},
		{"no right", token("nobody"), "/metrics", http.StatusForbidden},
		{"other path", token("scraper"), "/debug", http.StatusForbidden},
		{"made-up token", "not-a-token", "/metrics", http.StatusUnauthorized},
		{"no token", "", "/metrics", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+c.path, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		mustDo(err)
		_ = resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
}
