package chart

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
)

var (
	metricName  = regexp.MustCompile(`servicetoken_[a-z_]+`)
	aggregation = regexp.MustCompile(`\b(max|min|sum|avg|count)\s+by\s*\(([^()]*)\)\s*$`)
)

// unaggregated returns the servicetoken_* metrics of a PromQL expression that
// are not inside an aggregation "op by (labels) (...)" dropping the per-pod
// labels: with two replicas each would give two alerts. It follows
// parentheses only, which is enough for the chart's expressions.
func unaggregated(expr string) []string {
	var out []string
	for _, loc := range metricName.FindAllStringIndex(expr, -1) {
		var open []int // enclosing "(" positions
		inString := false
		for i, r := range expr[:loc[0]] {
			switch {
			case r == '"':
				inString = !inString
			case inString:
			case r == '(':
				open = append(open, i)
			case r == ')':
				open = open[:len(open)-1]
			}
		}
		ok := false
		for _, i := range open {
			if m := aggregation.FindStringSubmatch(expr[:i]); m != nil {
				by := strings.Split(strings.ReplaceAll(m[2], " ", ""), ",")
				if !slices.Contains(by, "pod") && !slices.Contains(by, "instance") {
					ok = true
				}
			}
		}
		if !ok {
			out = append(out, expr[loc[0]:loc[1]])
		}
	}
	return out
}

func TestUnaggregatedIsFound(t *testing.T) {
	for expr, want := range map[string][]string{
		`servicetoken_ready_status{condition="true"} == 0`:                                               {"servicetoken_ready_status"},
		`servicetoken_expiration_timestamp_seconds - time() < 3`:                                         {"servicetoken_expiration_timestamp_seconds"},
		`max by (namespace, name, pod) (servicetoken_ready_status) == 0`:                                 {"servicetoken_ready_status"},
		`rate(servicetoken_cloudflare_requests_total[5m]) > 0`:                                           {"servicetoken_cloudflare_requests_total"},
		`max by (namespace, name) (servicetoken_x) - on() servicetoken_y`:                                {"servicetoken_y"},
		`max by (namespace, name) (servicetoken_ready_status{condition="true"}) == 0`:                    nil,
		`sum by (job, code) (rate(servicetoken_cloudflare_requests_total{code=~"5..|429"}[10m])) > 0.05`: nil,
	} {
		NewWithT(t).Expect(unaggregated(expr)).To(Equal(want), expr)
	}
}

// TestAlertsAggregateOverReplicas renders the alerts with the chart's
// defaults (replicas: 2): every metric is aggregated over the pods, and a
// per-ServiceToken alert keeps the labels its description names.
func TestAlertsAggregateOverReplicas(t *testing.T) {
	g := NewWithT(t)
	objs := render(t, set("prometheusRule.enabled=true")...)
	g.Expect(deployments(t, objs)[0].Spec.Replicas).To(HaveValue(BeEquivalentTo(2)), "the case this guards against")
	rules := ofKind(objs, "PrometheusRule")
	g.Expect(rules).To(HaveLen(1))
	n := 0
	for _, grp := range dig(rules[0].u.Object, "spec", "groups").([]any) {
		for _, r := range grp.(map[string]any)["rules"].([]any) {
			rule := r.(map[string]any)
			expr, name := rule["expr"].(string), rule["alert"]
			n++
			g.Expect(unaggregated(expr)).To(BeEmpty(), "alert %s fires once per replica: %s", name, expr)
			desc, _ := dig(rule, "annotations", "description").(string)
			for _, label := range []string{"namespace", "name", "code", "source"} {
				if strings.Contains(desc, "$labels."+label+" ") {
					g.Expect(expr).To(MatchRegexp(`by \([^)]*\b`+label+`\b`), "alert %s describes $labels.%s, which its aggregation drops", name, label)
				}
			}
		}
	}
	g.Expect(n).To(Equal(4))
}

// TestMetricsReaderBinding: the reader ClusterRole is bound to the
// ServiceAccounts given, and to the chart's scraper account when the
// ServiceMonitor needs one.
func TestMetricsReaderBinding(t *testing.T) {
	g := NewWithT(t)
	binding := func(args ...string) []rbacv1.Subject {
		for _, o := range ofKind(render(t, args...), "ClusterRoleBinding") {
			if o.u.GetName() == fullname+"-metrics-reader" {
				var b rbacv1.ClusterRoleBinding
				g.Expect(o.decode(&b)).To(Succeed())
				g.Expect(b.RoleRef.Name).To(Equal(fullname + "-metrics-reader"))
				return b.Subjects
			}
		}
		return nil
	}
	sa := func(ns, name string) rbacv1.Subject {
		return rbacv1.Subject{Kind: "ServiceAccount", Namespace: ns, Name: name}
	}
	scraper := sa(releaseNamespace, fullname+"-metrics-scraper")

	g.Expect(binding()).To(BeEmpty(), "nobody is bound unless told")
	g.Expect(binding(set("metrics.reader.serviceAccounts[0].name=prometheus-k8s", "metrics.reader.serviceAccounts[0].namespace=monitoring",
		"metrics.reader.serviceAccounts[1].name=vmagent", "metrics.reader.subjects[0].kind=Group",
		"metrics.reader.subjects[0].name=scrapers", "metrics.reader.subjects[0].apiGroup=rbac.authorization.k8s.io")...)).To(ConsistOf(
		sa("monitoring", "prometheus-k8s"), sa(releaseNamespace, "vmagent"),
		rbacv1.Subject{Kind: "Group", Name: "scrapers", APIGroup: "rbac.authorization.k8s.io"}))

	objs := render(t, set("serviceMonitor.enabled=true")...)
	g.Expect(binding(set("serviceMonitor.enabled=true")...)).To(ConsistOf(scraper))
	names := map[string]string{}
	for _, o := range objs {
		names[o.u.GetKind()+" "+o.u.GetName()] = o.u.GetNamespace()
	}
	g.Expect(names).To(HaveKeyWithValue("ServiceAccount "+scraper.Name, releaseNamespace))
	g.Expect(names).To(HaveKeyWithValue("Secret "+scraper.Name+"-token", releaseNamespace))
	for _, o := range ofKind(objs, "Secret") {
		g.Expect(o.u.GetAnnotations()).To(HaveKeyWithValue("kubernetes.io/service-account.name", scraper.Name))
	}

	// A Secret of the user's: no scraper account, the ServiceMonitor reads theirs.
	args := set("serviceMonitor.enabled=true", "serviceMonitor.authorization.credentials.name=prom-token",
		"serviceMonitor.authorization.credentials.key=t")
	g.Expect(binding(args...)).To(BeEmpty())
	objs = render(t, args...)
	g.Expect(ofKind(objs, "Secret")).To(BeEmpty())
	ep := dig(ofKind(objs, "ServiceMonitor")[0].u.Object, "spec", "endpoints").([]any)[0].(map[string]any)
	g.Expect(dig(ep, "authorization", "credentials")).To(Equal(map[string]any{"name": "prom-token", "key": "t"}))

	_, err := helmTemplate(t, set("serviceMonitor.enabled=true", "metrics.reader.create=false")...)
	g.Expect(err).To(MatchError(ContainSubstring("needs metrics.reader.create")))
	_, err = helmTemplate(t, set("serviceMonitor.authorization.credentials.name=x")...)
	g.Expect(err).To(MatchError(ContainSubstring("/serviceMonitor/authorization/credentials")), "name without key")
}

// TestAggregatedRoles: the chart and the installer add the same rules to the
// built-in view, edit and admin roles; none reaches /status or the
// cluster-scoped accounts. test/security proves what they grant on a real API
// server.
func TestAggregatedRoles(t *testing.T) {
	g := NewWithT(t)
	type role struct {
		labels []string
		perms  []string
	}
	summary := func(roles map[string]rbacv1.ClusterRole, prefix string) map[string]role {
		out := map[string]role{}
		for name, r := range roles {
			var ls []string
			for k := range r.Labels {
				if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
					ls = append(ls, strings.TrimPrefix(k, "rbac.authorization.k8s.io/aggregate-to-")+"="+r.Labels[k])
				}
			}
			slices.Sort(ls)
			out[strings.TrimPrefix(name, prefix)] = role{labels: ls, perms: sortedPerms(perms(t, name, r.Rules))}
		}
		return out
	}
	chart := summary(peopleRoles(t, render(t)), fullname+"-")
	installer := summary(peopleRoles(t, renderKustomize(t)), "servicetoken-aggregate-")
	installer["cluster-view"] = installer["servicetoken-cluster-view"]
	delete(installer, "servicetoken-cluster-view")
	g.Expect(chart).To(Equal(installer), "templates/aggregate-roles.yaml and config/rbac/aggregate_roles.yaml differ")

	g.Expect(chart["view"].labels).To(Equal([]string{"admin=true", "edit=true", "view=true"}))
	g.Expect(chart["edit"].labels).To(Equal([]string{"admin=true", "edit=true"}))
	g.Expect(chart["cluster-view"].labels).To(Equal([]string{"cluster-reader=true"}))
	for name, r := range chart {
		for _, p := range r.perms {
			g.Expect(p).NotTo(ContainSubstring("/status"), "%s grants %s: only the operator writes status", name, p)
			if name != "cluster-view" {
				g.Expect(p).NotTo(ContainSubstring("clustercloudflareaccounts"), "%s, granted per namespace, grants %s", name, p)
			}
		}
	}
	g.Expect(peopleRoles(t, render(t, set("rbac.aggregateRoles=false")...))).To(BeEmpty())
}
