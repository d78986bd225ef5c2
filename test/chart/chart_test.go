package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const fullname = "st-servicetoken-operator" // release "st", chart servicetoken-operator

// scenarios are the value sets every render test goes through.
var scenarios = []struct {
	name string
	args []string
}{
	{"defaults", nil},
	{"namespaced RBAC", set("rbac.scope=namespaced", "watchNamespaces={team-a,team-b}")},
	{"ServiceMonitor and PrometheusRule", set("serviceMonitor.enabled=true", "prometheusRule.enabled=true")},
	{"namespaced RBAC with monitoring", set("rbac.scope=namespaced", "watchNamespaces={team-a,"+releaseNamespace+"}",
		"serviceMonitor.enabled=true", "prometheusRule.enabled=true", "leaderElection.namespace=leases",
		"metrics.reader.subjects[0].kind=ServiceAccount", "metrics.reader.subjects[0].name=prometheus",
		"metrics.reader.subjects[0].namespace=monitoring")},
	{"one replica, plain HTTP metrics", set("replicas=1", "leaderElection.enabled=false", "metrics.secure=false",
		"serviceMonitor.enabled=true")},
	{"metrics off, no CRDs", set("metrics.enabled=false", "crds.install=false")},
}

func TestHelmLint(t *testing.T) {
	helm := helmBin(t)
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			out, err := run(helm, append([]string{"lint", "--strict", chartDir, "--namespace", releaseNamespace}, sc.args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			NewWithT(t).Expect(out).To(ContainSubstring("0 chart(s) failed"))
		})
	}
}

// TestRenderedObjectsAreValid decodes every rendered object strictly into its
// API type, so a misspelt field in a template fails, and checks where it lands.
func TestRenderedObjectsAreValid(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			g := NewWithT(t)
			objs := render(t, sc.args...)
			g.Expect(ofKind(objs, "Deployment")).To(HaveLen(1))
			for _, o := range objs {
				var err error
				switch o.u.GetKind() {
				case "Deployment":
					err = o.decode(&appsv1.Deployment{})
				case "Service":
					err = o.decode(&corev1.Service{})
				case "ServiceAccount":
					err = o.decode(&corev1.ServiceAccount{})
				case "Secret":
					var sec corev1.Secret
					err = o.decode(&sec)
					g.Expect(sec.Type).To(Equal(corev1.SecretTypeServiceAccountToken), "the chart holds no secret of its own: %s", o)
				case "NetworkPolicy":
					err = o.decode(&networkingv1.NetworkPolicy{})
				case "PodDisruptionBudget":
					err = o.decode(&policyv1.PodDisruptionBudget{})
				case "Role":
					err = o.decode(&rbacv1.Role{})
				case "RoleBinding":
					err = o.decode(&rbacv1.RoleBinding{})
				case "ClusterRole":
					err = o.decode(&rbacv1.ClusterRole{})
				case "ClusterRoleBinding":
					err = o.decode(&rbacv1.ClusterRoleBinding{})
				case "CustomResourceDefinition":
					err = o.decode(&apiextv1.CustomResourceDefinition{})
				case "ServiceMonitor", "PrometheusRule":
					g.Expect(o.u.GetAPIVersion()).To(Equal("monitoring.coreos.com/v1"), o.String())
				default:
					t.Errorf("unexpected object %s", o)
				}
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(o.u.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/instance", "st"), o.String())
				switch o.u.GetKind() {
				case "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition":
					g.Expect(o.u.GetNamespace()).To(BeEmpty(), o.String())
				case "Role", "RoleBinding":
					g.Expect(o.u.GetNamespace()).NotTo(BeEmpty(), o.String())
				default:
					g.Expect(o.u.GetNamespace()).To(Equal(releaseNamespace), o.String())
				}
			}
		})
	}
}

func TestDeploymentPassesRestrictedPodSecurity(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, d := range deployments(t, render(t, sc.args...)) {
				NewWithT(t).Expect(podSecurityViolations(t, &d.Spec.Template)).To(BeEmpty(), "Deployment %s", d.Name)
			}
		})
	}
	// The check itself must catch a weakened pod, or the above proves nothing.
	for _, weaken := range [][]string{
		set("securityContext.allowPrivilegeEscalation=true"),
		set("podSecurityContext.seccompProfile.type=Unconfined"),
		set("securityContext.capabilities.drop=null"),
		set("podSecurityContext.runAsNonRoot=false", "securityContext.runAsNonRoot=false"),
	} {
		t.Run("catches "+strings.Join(weaken, " "), func(t *testing.T) {
			d := deployments(t, render(t, weaken...))
			NewWithT(t).Expect(d).To(HaveLen(1))
			NewWithT(t).Expect(podSecurityViolations(t, &d[0].Spec.Template)).NotTo(BeEmpty())
		})
	}
}

func TestDeployment(t *testing.T) {
	g := NewWithT(t)
	known := managerFlags(t)
	for _, sc := range scenarios {
		for _, d := range deployments(t, render(t, sc.args...)) {
			c := d.Spec.Template.Spec.Containers
			g.Expect(c).To(HaveLen(1))
			for flag := range argMap(t, c[0].Args) {
				g.Expect(known).To(HaveKey(flag), "%s: the manager has no flag --%s", sc.name, flag)
			}
		}
	}

	t.Run("defaults", func(t *testing.T) {
		g := NewWithT(t)
		d := deployments(t, render(t))[0]
		g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(2))
		g.Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal(fullname))
		c := d.Spec.Template.Spec.Containers[0]
		g.Expect(c.Image).To(Equal("ghcr.io/servicetoken-operator/servicetoken-operator:" + releaseVersion(t)))
		g.Expect(c.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
		g.Expect(argMap(t, c.Args)).To(Equal(map[string]string{
			"leader-elect":              "true",
			"leader-election-namespace": releaseNamespace,
			"max-concurrent-reconciles": "4",
			"kube-api-qps":              "50",
			"kube-api-burst":            "100",
			"drift-check-period":        "10m",
			"graceful-shutdown-timeout": "60s",
			"metrics-bind-address":      ":8443",
			"metrics-secure":            "true",
			"health-probe-bind-address": ":8081",
			"zap-encoder":               "json",
			"zap-log-level":             "info",
			"allowed-api-urls":          "https://api.cloudflare.com/",
			"install-id":                releaseNamespace,
		}))
		// A secret issuance in flight at shutdown gets up to 45s; the manager
		// waits --graceful-shutdown-timeout for it, and the kubelet must wait longer.
		g.Expect(*d.Spec.Template.Spec.TerminationGracePeriodSeconds).To(BeNumerically(">", 60))
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		g.Expect(ports).To(Equal(map[string]int32{"metrics": 8443, "probes": 8081}))
		g.Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
		g.Expect(c.LivenessProbe.HTTPGet.Port.String()).To(Equal("probes"))
		g.Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
		g.Expect(c.ReadinessProbe.HTTPGet.Port.String()).To(Equal("probes"))
		g.Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		g.Expect(c.Resources.Requests).NotTo(BeEmpty())
		g.Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceMemory))
		g.Expect(d.Spec.Template.Spec.Affinity.PodAntiAffinity).NotTo(BeNil(), "replicas spread across nodes")
	})

	t.Run("values map to flags", func(t *testing.T) {
		g := NewWithT(t)
		d := deployments(t, render(t, set(
			"rbac.scope=namespaced", "watchNamespaces={team-b,team-a}",
			"leaderElection.namespace=leases",
			"manager.maxConcurrentReconciles=8", "manager.kubeAPIQPS=12.5", "manager.kubeAPIBurst=30",
			"manager.defaultAPIURL=http://cfsim.test:8080/client/v4", "manager.driftCheckPeriod=90s", "clusterName=eu-west-1",
			"manager.gracefulShutdownTimeout=2m", "terminationGracePeriodSeconds=150",
			"manager.logLevel=debug", "metrics.port=9443", "metrics.secure=false", "health.port=9081",
			"manager.extraArgs={--zap-stacktrace-level=panic}",
			"allowedAPIURLs={https://api.cloudflare.com/,https://egress.corp.example/cloudflare/}",
			"image.repository=registry.test/op", "image.tag=v9", "image.pullPolicy=Always",
			"replicas=3", "serviceAccount.name=custom-sa",
			"podAnnotations.team=platform", "nodeSelector.pool=system",
			"tolerations[0].key=dedicated", "tolerations[0].operator=Exists",
			"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
			"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
		)...))[0]
		c := d.Spec.Template.Spec.Containers[0]
		g.Expect(argMap(t, c.Args)).To(Equal(map[string]string{
			"leader-elect":              "true",
			"leader-election-namespace": "leases",
			"watch-namespaces":          "team-a,team-b",
			"max-concurrent-reconciles": "8",
			"kube-api-qps":              "12.5",
			"kube-api-burst":            "30",
			"default-api-url":           "http://cfsim.test:8080/client/v4",
			"drift-check-period":        "90s",
			"cluster-name":              "eu-west-1",
			"graceful-shutdown-timeout": "2m",
			"metrics-bind-address":      ":9443",
			"metrics-secure":            "false",
			"health-probe-bind-address": ":9081",
			"zap-encoder":               "json",
			"zap-log-level":             "debug",
			"zap-stacktrace-level":      "panic",
			"allowed-api-urls":          "https://api.cloudflare.com/,https://egress.corp.example/cloudflare/",
			"install-id":                releaseNamespace,
		}))
		g.Expect(c.Image).To(Equal("registry.test/op:v9"))
		g.Expect(*d.Spec.Template.Spec.TerminationGracePeriodSeconds).To(BeEquivalentTo(150))
		g.Expect(c.ImagePullPolicy).To(Equal(corev1.PullAlways))
		g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(3))
		g.Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal("custom-sa"))
		g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue("team", "platform"))
		g.Expect(d.Spec.Template.Spec.NodeSelector).To(HaveKeyWithValue("pool", "system"))
		g.Expect(d.Spec.Template.Spec.Tolerations).To(HaveLen(1))
		g.Expect(d.Spec.Template.Spec.Affinity.NodeAffinity).NotTo(BeNil())
		g.Expect(d.Spec.Template.Spec.Affinity.PodAntiAffinity).To(BeNil(), "affinity replaces the default")
	})

	t.Run("digest pins the image", func(t *testing.T) {
		digest := "sha256:" + strings.Repeat("ab", 32)
		d := deployments(t, render(t, set("image.tag=v9", "image.digest="+digest)...))[0]
		NewWithT(t).Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("ghcr.io/servicetoken-operator/servicetoken-operator@" + digest))
	})

	t.Run("metrics off", func(t *testing.T) {
		g := NewWithT(t)
		objs := render(t, set("metrics.enabled=false")...)
		args := argMap(t, deployments(t, objs)[0].Spec.Template.Spec.Containers[0].Args)
		g.Expect(args).To(HaveKeyWithValue("metrics-bind-address", "0"))
		g.Expect(ofKind(objs, "Service")).To(BeEmpty())
	})
}

// releaseVersion is the repository's VERSION, after checking that Chart.yaml's
// version and appVersion (the default image tag) are that version.
func releaseVersion(t *testing.T) string {
	t.Helper()
	v, err := os.ReadFile(root("VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(v))
	src, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(src, &c); err != nil {
		t.Fatalf("Chart.yaml: %v", err)
	}
	if c.Version != want || c.AppVersion != want {
		t.Fatalf("Chart.yaml has version %q, appVersion %q; VERSION says %q: run make version-sync", c.Version, c.AppVersion, want)
	}
	return want
}

func TestPodDisruptionBudget(t *testing.T) {
	g := NewWithT(t)
	objs := render(t)
	pdbs := ofKind(objs, "PodDisruptionBudget")
	g.Expect(pdbs).To(HaveLen(1))
	var pdb policyv1.PodDisruptionBudget
	g.Expect(pdbs[0].decode(&pdb)).To(Succeed())
	g.Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sel.Matches(labels.Set(deployments(t, objs)[0].Spec.Template.Labels))).To(BeTrue())

	g.Expect(ofKind(render(t, set("replicas=1")...), "PodDisruptionBudget")).To(BeEmpty(), "one replica: a PDB would block every drain")
	g.Expect(ofKind(render(t, set("podDisruptionBudget.enabled=false")...), "PodDisruptionBudget")).To(BeEmpty())
}

func TestMetricsServiceAndServiceMonitor(t *testing.T) {
	for _, secure := range []bool{true, false} {
		t.Run(fmt.Sprintf("secure=%v", secure), func(t *testing.T) {
			g := NewWithT(t)
			objs := render(t, set("serviceMonitor.enabled=true", fmt.Sprintf("metrics.secure=%v", secure))...)
			d := deployments(t, objs)[0]
			svcs := ofKind(objs, "Service")
			g.Expect(svcs).To(HaveLen(1))
			var svc corev1.Service
			g.Expect(svcs[0].decode(&svc)).To(Succeed())
			g.Expect(labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels))).To(BeTrue(),
				"the metrics Service selects the manager pods")
			g.Expect(svc.Spec.Ports).To(HaveLen(1))
			g.Expect(svc.Spec.Ports[0].TargetPort.String()).To(Equal("metrics"))
			g.Expect(svc.Spec.Ports[0].Port).To(BeEquivalentTo(8443))

			sms := ofKind(objs, "ServiceMonitor")
			g.Expect(sms).To(HaveLen(1))
			sm := sms[0].u.Object
			matchLabels := dig(sm, "spec", "selector", "matchLabels").(map[string]any)
			for k, v := range matchLabels {
				g.Expect(svc.Labels).To(HaveKeyWithValue(k, v), "the ServiceMonitor selects the metrics Service")
			}
			eps := dig(sm, "spec", "endpoints").([]any)
			g.Expect(eps).To(HaveLen(1))
			ep := eps[0].(map[string]any)
			g.Expect(ep["port"]).To(Equal(svc.Spec.Ports[0].Name))
			g.Expect(ep["path"]).To(Equal("/metrics"))
			g.Expect(ep).NotTo(HaveKey("bearerTokenFile"), "deprecated in prometheus-operator: authorization replaces it")
			if secure {
				g.Expect(ep["scheme"]).To(Equal("https"))
				g.Expect(ep["authorization"]).To(Equal(map[string]any{"type": "Bearer",
					"credentials": map[string]any{"name": fullname + "-metrics-scraper-token", "key": "token"}}))
			} else {
				g.Expect(ep["scheme"]).To(Equal("http"))
				g.Expect(ep).NotTo(HaveKey("authorization"))
			}
		})
	}
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func TestPrometheusRule(t *testing.T) {
	g := NewWithT(t)
	g.Expect(ofKind(render(t), "PrometheusRule")).To(BeEmpty(), "off by default")

	alerts := func(args ...string) map[string]map[string]any {
		objs := ofKind(render(t, append(set("prometheusRule.enabled=true"), args...)...), "PrometheusRule")
		g.Expect(objs).To(HaveLen(1))
		out := map[string]map[string]any{}
		for _, grp := range dig(objs[0].u.Object, "spec", "groups").([]any) {
			for _, r := range grp.(map[string]any)["rules"].([]any) {
				rule := r.(map[string]any)
				name, _ := rule["alert"].(string)
				g.Expect(name).NotTo(BeEmpty(), "every rule is an alert: %v", rule)
				g.Expect(rule["expr"]).NotTo(BeEmpty())
				g.Expect(dig(rule, "labels", "severity")).NotTo(BeEmpty())
				g.Expect(dig(rule, "annotations", "summary")).NotTo(BeEmpty())
				out[name] = rule
			}
		}
		return out
	}

	a := alerts()
	g.Expect(a).To(HaveLen(4))
	g.Expect(a["ServiceTokenExpiringSoon"]["expr"]).To(Equal("max by (namespace, name) (servicetoken_expiration_timestamp_seconds) - time() < 259200"))
	g.Expect(a["ServiceTokenNotReady"]["expr"]).To(Equal(`max by (namespace, name) (servicetoken_ready_status{condition="true"}) == 0`))
	g.Expect(a["ServiceTokenNotReady"]["for"]).To(Equal("15m"))
	g.Expect(a["ServiceTokenCloudflareAPIErrors"]["expr"]).To(And(
		ContainSubstring(`rate(servicetoken_cloudflare_requests_total{code=~"5..|429|error"}[`),
		HaveSuffix("> 0.05")))
	g.Expect(a["ServiceTokenCloudflareRateLimited"]["expr"]).To(ContainSubstring("rate(servicetoken_cloudflare_rate_limited_total["))
	// Prometheus templates in annotations reach Prometheus unexpanded.
	g.Expect(dig(a["ServiceTokenExpiringSoon"], "annotations", "description")).To(ContainSubstring("{{ $labels.namespace }}"))

	a = alerts(set("prometheusRule.tokenExpiring.thresholdSeconds=604800", "prometheusRule.tokenNotReady.enabled=false",
		"prometheusRule.alertLabels.team=platform", "prometheusRule.cloudflareErrors.severity=critical")...)
	g.Expect(a).To(HaveLen(3))
	g.Expect(a).NotTo(HaveKey("ServiceTokenNotReady"))
	g.Expect(a["ServiceTokenExpiringSoon"]["expr"]).To(HaveSuffix("< 604800"))
	g.Expect(dig(a["ServiceTokenExpiringSoon"], "labels", "team")).To(Equal("platform"))
	g.Expect(dig(a["ServiceTokenCloudflareAPIErrors"], "labels", "severity")).To(Equal("critical"))
}

// TestChartCRDsMatchConfig: the chart installs exactly the CRDs of
// config/crd/bases (`make chart-crds` copies them), plus its labels and the
// keep annotation.
func TestChartCRDsMatchConfig(t *testing.T) {
	g := NewWithT(t)
	want := configCRDs(t)
	got := crds(t, render(t))
	g.Expect(got).To(HaveLen(len(want)))
	for name, w := range want {
		c, ok := got[name]
		g.Expect(ok).To(BeTrue(), "the chart lacks CRD %s: run `make chart-crds`", name)
		g.Expect(c.Annotations).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"), name)
		g.Expect(c.Labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"), name)
		delete(c.Annotations, "helm.sh/resource-policy")
		c.Labels = nil
		g.Expect(equality.Semantic.DeepEqual(c, w)).To(BeTrue(),
			"CRD %s in the chart differs from config/crd/bases: run `make chart-crds`", name)
	}

	for name, c := range crds(t, render(t, set("crds.keep=false")...)) {
		g.Expect(c.Annotations).NotTo(HaveKey("helm.sh/resource-policy"), name)
	}
	g.Expect(crds(t, render(t, set("crds.install=false")...))).To(BeEmpty())
}

// namespacedResource says whether a resource of role.yaml is namespaced:
// cluster-scoped are namespaces and the CRDs with scope Cluster.
func namespacedResource(t *testing.T) func(p perm) bool {
	cluster := map[string]bool{"/namespaces": true}
	for _, c := range configCRDs(t) {
		if c.Spec.Scope == apiextv1.ClusterScoped {
			cluster[c.Spec.Group+"/"+c.Spec.Names.Plural] = true
		}
	}
	return func(p perm) bool {
		base, _, _ := strings.Cut(p.resource, "/")
		return !cluster[p.group+"/"+base]
	}
}

func TestRBACClusterScope(t *testing.T) {
	g := NewWithT(t)
	want := perms(t, "config/rbac/role.yaml", managerRole(t).Rules)
	objs := render(t)
	roles := rolesOf(t, objs)
	got, ok := roles["ClusterRole /"+fullname+"-manager"]
	g.Expect(ok).To(BeTrue(), "no manager ClusterRole among %v", keys(roles))
	g.Expect(sortedPerms(perms(t, "chart manager ClusterRole", got))).To(Equal(sortedPerms(want)),
		"the chart's manager ClusterRole differs from config/rbac/role.yaml: run `make chart-rbac`")
	for name := range roles {
		if strings.HasPrefix(name, "Role ") {
			g.Expect(name).To(HaveSuffix("-leader-election"), "cluster scope needs no Role but leader election's")
		}
	}
	expectBound(t, objs, "ClusterRole", "", fullname+"-manager")
}

func TestRBACNamespacedScope(t *testing.T) {
	g := NewWithT(t)
	want := perms(t, "config/rbac/role.yaml", managerRole(t).Rules)
	isNamespaced := namespacedResource(t)
	objs := render(t, set("rbac.scope=namespaced", "watchNamespaces={team-a,team-b}")...)
	roles := rolesOf(t, objs)

	union := map[perm]bool{}
	for _, ns := range []string{"team-a", "team-b"} {
		rules, ok := roles["Role "+ns+"/"+fullname+"-manager"]
		g.Expect(ok).To(BeTrue(), "no manager Role in %s among %v", ns, keys(roles))
		ps := perms(t, ns, rules)
		for p := range ps {
			g.Expect(isNamespaced(p)).To(BeTrue(), "a Role cannot grant the cluster-scoped %s", p)
			union[p] = true
		}
		for p := range want {
			if isNamespaced(p) {
				g.Expect(ps).To(HaveKey(p), "the Role in %s lacks %s of config/rbac/role.yaml", ns, p)
			}
		}
		expectBound(t, objs, "Role", ns, fullname+"-manager")
	}
	clusterRules, ok := roles["ClusterRole /"+fullname+"-manager-cluster"]
	g.Expect(ok).To(BeTrue(), "no cluster-level ClusterRole among %v", keys(roles))
	for p := range perms(t, "cluster rules", clusterRules) {
		g.Expect(isNamespaced(p)).To(BeFalse(), "namespaced mode grants %s cluster-wide", p)
		union[p] = true
	}
	expectBound(t, objs, "ClusterRole", "", fullname+"-manager-cluster")
	g.Expect(sortedPerms(union)).To(Equal(sortedPerms(want)),
		"Roles plus ClusterRole differ from config/rbac/role.yaml: run `make chart-rbac`")

	// No ClusterRole of any kind grants Secrets in namespaced mode.
	for name, rules := range roles {
		if strings.HasPrefix(name, "ClusterRole ") {
			for p := range perms(t, name, rules) {
				g.Expect(p.resource).NotTo(Equal("secrets"), "%s grants %s cluster-wide", name, p)
			}
		}
	}
	// ClusterCloudflareAccount credentials: read-only, release namespace only.
	creds, ok := roles["Role "+releaseNamespace+"/"+fullname+"-cluster-account-credentials"]
	g.Expect(ok).To(BeTrue(), "no Role to read credentials Secrets in the release namespace among %v", keys(roles))
	g.Expect(sortedPerms(perms(t, "credentials", creds))).To(Equal([]string{"/secrets:get"}))
	expectBound(t, objs, "Role", releaseNamespace, fullname+"-cluster-account-credentials")

	// Watching the release namespace already covers its Secrets.
	roles = rolesOf(t, render(t, set("rbac.scope=namespaced", "watchNamespaces={team-a,"+releaseNamespace+"}")...))
	g.Expect(roles).NotTo(HaveKey("Role " + releaseNamespace + "/" + fullname + "-cluster-account-credentials"))
	g.Expect(roles).To(HaveKey("Role " + releaseNamespace + "/" + fullname + "-manager"))
}

// TestRBACLeastPrivilege: across every scenario, no rule uses a wildcard and
// every verb is one config/rbac/role.yaml uses; every binding is to a rendered
// role, for the manager's ServiceAccount.
func TestRBACLeastPrivilege(t *testing.T) {
	allowedVerbs := map[string]bool{}
	for p := range perms(t, "role.yaml", managerRole(t).Rules) {
		allowedVerbs[p.verb] = true
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			objs := render(t, sc.args...)
			expectLeastPrivilege(t, rolesOf(t, objs), allowedVerbs)
			expectBindingsResolve(t, objs, fullname, releaseNamespace)
		})
	}
}

func expectLeastPrivilege(t *testing.T, roles map[string][]rbacv1.PolicyRule, allowedVerbs map[string]bool) {
	g := NewWithT(t)
	g.Expect(roles).NotTo(BeEmpty())
	for name, rules := range roles {
		for _, r := range rules {
			for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.NonResourceURLs, r.ResourceNames} {
				for _, s := range list {
					g.Expect(s).NotTo(ContainSubstring("*"), "%s has a wildcard in %v", name, r)
				}
			}
			for _, v := range r.Verbs {
				g.Expect(allowedVerbs).To(HaveKey(v), "%s uses verb %q, which config/rbac/role.yaml does not", name, v)
			}
		}
	}
}

// expectBindingsResolve: every binding refers to a rendered role (a Role in its
// own namespace), and binds the manager's ServiceAccount or the configured
// metrics readers.
func expectBindingsResolve(t *testing.T, objs []object, sa, saNamespace string) {
	g := NewWithT(t)
	roles := rolesOf(t, objs)
	for _, o := range objs {
		var ref rbacv1.RoleRef
		var subjects []rbacv1.Subject
		switch o.u.GetKind() {
		case "RoleBinding":
			var b rbacv1.RoleBinding
			g.Expect(o.decode(&b)).To(Succeed())
			ref, subjects = b.RoleRef, b.Subjects
			if ref.Kind == "Role" {
				g.Expect(roles).To(HaveKey("Role "+b.Namespace+"/"+ref.Name), "%s refers to a missing Role", o)
			}
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			g.Expect(o.decode(&b)).To(Succeed())
			ref, subjects = b.RoleRef, b.Subjects
		default:
			continue
		}
		if ref.Kind == "ClusterRole" {
			g.Expect(roles).To(HaveKey("ClusterRole /"+ref.Name), "%s refers to a missing ClusterRole", o)
		}
		g.Expect(subjects).NotTo(BeEmpty(), o.String())
		if strings.HasSuffix(ref.Name, "-metrics-reader") {
			continue // bound to the scrapers (TestMetricsReaderBinding)
		}
		g.Expect(subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: saNamespace}), o.String())
	}
	var names []string
	for _, o := range ofKind(objs, "ServiceAccount") {
		names = append(names, o.u.GetName())
	}
	// The manager's, and the ServiceMonitor's scraper when there is one.
	g.Expect(names).To(Or(ConsistOf(sa), ConsistOf(sa, fullname+"-metrics-scraper")))
}

// expectBound: the role is bound to the manager's ServiceAccount.
func expectBound(t *testing.T, objs []object, kind, namespace, name string) {
	t.Helper()
	for _, o := range objs {
		if (o.u.GetKind() == "RoleBinding" || o.u.GetKind() == "ClusterRoleBinding") && o.u.GetNamespace() == namespace &&
			dig(o.u.Object, "roleRef", "kind") == kind && dig(o.u.Object, "roleRef", "name") == name {
			return
		}
	}
	t.Errorf("no binding of %s %s/%s", kind, namespace, name)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestLeaderElectionAndMetricsAuthRBAC(t *testing.T) {
	g := NewWithT(t)
	for _, leaseNS := range []string{"", "leases"} {
		args := []string{}
		want := releaseNamespace
		if leaseNS != "" {
			args, want = set("leaderElection.namespace="+leaseNS), leaseNS
		}
		objs := render(t, args...)
		roles := rolesOf(t, objs)
		le, ok := roles["Role "+want+"/"+fullname+"-leader-election"]
		g.Expect(ok).To(BeTrue(), "no leader election Role in %s among %v", want, keys(roles))
		g.Expect(sortedPerms(perms(t, "leader election", le))).To(Equal([]string{
			"/events:create", "/events:patch",
			"coordination.k8s.io/leases:create", "coordination.k8s.io/leases:get", "coordination.k8s.io/leases:update",
		}))
		expectBound(t, objs, "Role", want, fullname+"-leader-election")

		auth, ok := roles["ClusterRole /"+fullname+"-metrics-auth"]
		g.Expect(ok).To(BeTrue())
		g.Expect(sortedPerms(perms(t, "metrics auth", auth))).To(Equal([]string{
			"authentication.k8s.io/tokenreviews:create", "authorization.k8s.io/subjectaccessreviews:create",
		}))
		expectBound(t, objs, "ClusterRole", "", fullname+"-metrics-auth")
	}
	roles := rolesOf(t, render(t, set("replicas=1", "leaderElection.enabled=false", "metrics.secure=false")...))
	g.Expect(roles).NotTo(HaveKey("Role " + releaseNamespace + "/" + fullname + "-leader-election"))
	g.Expect(roles).NotTo(HaveKey("ClusterRole /" + fullname + "-metrics-auth"))
}

func TestValuesAreChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown top-level key", set("replica=3"), "additional properties 'replica' not allowed"},
		{"unknown nested key", set("rbac.scop=namespaced"), "additional properties 'scop' not allowed"},
		{"bad RBAC scope", set("rbac.scope=everywhere"), "/rbac/scope"},
		{"bad pull policy", set("image.pullPolicy=Sometimes"), "/image/pullPolicy"},
		{"bad namespace name", set("watchNamespaces={Team_A}"), "/watchNamespaces"},
		{"bad duration", set("manager.driftCheckPeriod=ten minutes"), "/manager/driftCheckPeriod"},
		{"cluster name that is not a DNS label", set("clusterName=EU_West"), "/clusterName"},
		{"an allowed API URL that is not http(s)", set("allowedAPIURLs={ftp://api.cloudflare.com/}"), "/allowedAPIURLs"},
		{"an allowed API URL with user info", set("allowedAPIURLs={https://me@api.cloudflare.com/}"), "/allowedAPIURLs"},
		{"namespaced RBAC without namespaces", set("rbac.scope=namespaced"), "rbac.scope=namespaced needs watchNamespaces"},
		{"replicas without leader election", set("leaderElection.enabled=false"), "replicas > 1 needs leaderElection.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helmTemplate(t, tc.args...)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}
}

// TestValuesDocumentedAndSchemaInSync: every value the schema knows is in
// values.yaml and the other way round, so none is undocumented or unchecked.
func TestValuesDocumentedAndSchemaInSync(t *testing.T) {
	g := NewWithT(t)
	var values map[string]any
	var schema map[string]any
	for file, into := range map[string]any{"values.yaml": &values, "values.schema.json": &schema} {
		src, err := os.ReadFile(filepath.Join(chartDir, file))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(yaml.Unmarshal(src, into)).To(Succeed(), file)
	}
	g.Expect(schema["additionalProperties"]).To(BeFalse(), "the schema rejects unknown top-level keys")
	var walk func(path string, v map[string]any, s map[string]any)
	walk = func(path string, v map[string]any, s map[string]any) {
		props, _ := s["properties"].(map[string]any)
		for k, sub := range props {
			if path == "" && k == "global" {
				continue // set by parent charts
			}
			val, ok := v[k]
			g.Expect(ok).To(BeTrue(), "schema property %s%s is not in values.yaml", path, k)
			sm, _ := sub.(map[string]any)
			if vm, isMap := val.(map[string]any); isMap && sm["properties"] != nil {
				walk(path+k+".", vm, sm)
			}
		}
		if s["additionalProperties"] == false {
			for k := range v {
				g.Expect(props).To(HaveKey(k), "values.yaml key %s%s is not in values.schema.json", path, k)
			}
		}
	}
	walk("", values, schema)
}

// TestNotes renders NOTES.txt (which `helm template` does not print) by
// turning it into a ConfigMap in a copy of the chart.
func TestNotes(t *testing.T) {
	helm := helmBin(t)
	dir := t.TempDir()
	copyDir(t, chartDir, dir)
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	g := NewWithT(t)
	g.Expect(os.Remove(filepath.Join(dir, "templates", "NOTES.txt"))).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(dir, "templates", "_notes_test.tpl"),
		[]byte(`{{- define "notes-under-test" }}`+string(notes)+`{{- end }}`), 0o644)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(dir, "templates", "notes-under-test.yaml"), []byte(
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include \"notes-under-test\" . | toJson }}\n"), 0o644)).To(Succeed())

	renderNotes := func(args ...string) string {
		out, err := run(helm, append([]string{"template", "st", dir, "--namespace", releaseNamespace,
			"--show-only", "templates/notes-under-test.yaml"}, args...)...)
		g.Expect(err).NotTo(HaveOccurred())
		var cm corev1.ConfigMap
		g.Expect(yaml.Unmarshal([]byte(out), &cm)).To(Succeed())
		return cm.Data["notes"]
	}
	n := renderNotes()
	g.Expect(n).To(ContainSubstring("kind: CloudflareAccount"))
	g.Expect(n).To(ContainSubstring("kind: ServiceToken"))
	g.Expect(n).To(ContainSubstring("create secret generic cloudflare-api"))
	g.Expect(n).To(ContainSubstring("label secret cloudflare-api access.servicetoken.dev/credentials=true"))
	g.Expect(n).To(ContainSubstring(`Secret
"example-app-cf-access" in namespace default`))
	g.Expect(n).To(ContainSubstring("rollout status deployment/" + fullname))

	g.Expect(n).To(ContainSubstring("Nobody may scrape it yet"))
	g.Expect(renderNotes(set("serviceMonitor.enabled=true")...)).NotTo(ContainSubstring("Nobody may scrape it yet"))
	g.Expect(renderNotes(set("metrics.reader.serviceAccounts[0].name=prometheus")...)).NotTo(ContainSubstring("Nobody may scrape it yet"))

	n = renderNotes(set("rbac.scope=namespaced", "watchNamespaces={team-a,team-b}")...)
	g.Expect(n).To(ContainSubstring("namespace: team-a"))
	g.Expect(n).To(ContainSubstring("must be in " + releaseNamespace))
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
