package chart

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestInstaller checks config/default as `make build-installer` renders it
// into dist/install.yaml: complete, least-privilege, "restricted".
func TestInstaller(t *testing.T) {
	objs := renderKustomize(t)
	const ns = "servicetoken-system"
	const sa = "servicetoken-controller-manager"

	t.Run("objects", func(t *testing.T) {
		g := NewWithT(t)
		kinds := map[string]int{}
		for _, o := range objs {
			kinds[o.u.GetKind()]++
			switch o.u.GetKind() {
			case "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition":
				g.Expect(o.u.GetNamespace()).To(BeEmpty(), o.String())
			default:
				g.Expect(o.u.GetNamespace()).To(Equal(ns), o.String())
			}
		}
		g.Expect(kinds).To(Equal(map[string]int{
			"Namespace": 1, "CustomResourceDefinition": len(configCRDs(t)),
			"ServiceAccount": 1, "Role": 1, "RoleBinding": 1,
			// manager, metrics auth (+ metrics reader, unbound; + view, edit and
			// cluster-view for people, aggregated)
			"ClusterRole": 6, "ClusterRoleBinding": 2,
			"Deployment": 1, "PodDisruptionBudget": 1, "Service": 1,
		}))
		var nsObj corev1.Namespace
		g.Expect(ofKind(objs, "Namespace")[0].decode(&nsObj)).To(Succeed())
		g.Expect(nsObj.Name).To(Equal(ns))
		g.Expect(nsObj.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
	})

	t.Run("CRDs equal config/crd/bases", func(t *testing.T) {
		g := NewWithT(t)
		got := crds(t, objs)
		for name, want := range configCRDs(t) {
			c, ok := got[name]
			g.Expect(ok).To(BeTrue(), name)
			c.Labels = nil // the kustomization's common labels
			g.Expect(equality.Semantic.DeepEqual(c, want)).To(BeTrue(), "CRD %s differs from config/crd/bases", name)
		}
	})

	t.Run("Deployment", func(t *testing.T) {
		g := NewWithT(t)
		ds := deployments(t, objs)
		g.Expect(ds).To(HaveLen(1))
		d := ds[0]
		g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(2))
		g.Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal(sa))
		g.Expect(podSecurityViolations(t, &d.Spec.Template)).To(BeEmpty())
		c := d.Spec.Template.Spec.Containers
		g.Expect(c).To(HaveLen(1))
		g.Expect(c[0].Image).To(Equal("ghcr.io/servicetoken-operator/servicetoken-operator:"+releaseVersion(t)), "the image tag is VERSION (make version-sync)")
		args := argMap(t, c[0].Args)
		g.Expect(args).To(HaveKeyWithValue("leader-elect", ""))
		g.Expect(args).To(HaveKeyWithValue("zap-encoder", "json"))
		known := managerFlags(t)
		for flag := range args {
			g.Expect(known).To(HaveKey(flag), "the manager has no flag --%s", flag)
		}
		g.Expect(*c[0].SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		g.Expect(c[0].LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
		g.Expect(c[0].ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))

		pods := labels.Set(d.Spec.Template.Labels)
		var svc corev1.Service
		g.Expect(ofKind(objs, "Service")[0].decode(&svc)).To(Succeed())
		g.Expect(labels.SelectorFromSet(svc.Spec.Selector).Matches(pods)).To(BeTrue(), "the metrics Service selects the pods")
		g.Expect(svc.Spec.Ports[0].TargetPort.String()).To(Equal("metrics"))
		var pdb policyv1.PodDisruptionBudget
		g.Expect(ofKind(objs, "PodDisruptionBudget")[0].decode(&pdb)).To(Succeed())
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(sel.Matches(pods)).To(BeTrue(), "the PodDisruptionBudget selects the pods")
		g.Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))
	})

	t.Run("weakened Deployment fails Pod Security", func(t *testing.T) {
		d := deployments(t, objs)[0]
		yes := true
		d.Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = &yes
		NewWithT(t).Expect(podSecurityViolations(t, &d.Spec.Template)).To(ContainSubstring("allowPrivilegeEscalation"))
	})

	t.Run("RBAC", func(t *testing.T) {
		g := NewWithT(t)
		roles := rolesOf(t, objs)
		want := perms(t, "config/rbac/role.yaml", managerRole(t).Rules)
		got, ok := roles["ClusterRole /servicetoken-manager-role"]
		g.Expect(ok).To(BeTrue(), "roles: %v", keys(roles))
		g.Expect(sortedPerms(perms(t, "manager-role", got))).To(Equal(sortedPerms(want)))
		allowed := map[string]bool{}
		for p := range want {
			allowed[p.verb] = true
		}
		expectLeastPrivilege(t, roles, allowed)
		g.Expect(sortedPerms(perms(t, "leader election", roles["Role "+ns+"/servicetoken-leader-election-role"]))).To(Equal([]string{
			"/events:create", "/events:patch",
			"coordination.k8s.io/leases:create", "coordination.k8s.io/leases:get", "coordination.k8s.io/leases:update",
		}))
		g.Expect(sortedPerms(perms(t, "metrics auth", roles["ClusterRole /servicetoken-metrics-auth-role"]))).To(Equal([]string{
			"authentication.k8s.io/tokenreviews:create", "authorization.k8s.io/subjectaccessreviews:create",
		}))
		for _, o := range objs {
			var subjects []rbacv1.Subject
			switch o.u.GetKind() {
			case "RoleBinding":
				var b rbacv1.RoleBinding
				g.Expect(o.decode(&b)).To(Succeed())
				g.Expect(roles).To(HaveKey("Role "+ns+"/"+b.RoleRef.Name), o.String())
				subjects = b.Subjects
			case "ClusterRoleBinding":
				var b rbacv1.ClusterRoleBinding
				g.Expect(o.decode(&b)).To(Succeed())
				g.Expect(roles).To(HaveKey("ClusterRole /"+b.RoleRef.Name), o.String())
				subjects = b.Subjects
			default:
				continue
			}
			g.Expect(subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: ns}), o.String())
		}
		for name := range roles {
			g.Expect(strings.Contains(name, "metrics-reader") || strings.Contains(name, "manager-role") ||
				strings.Contains(name, "metrics-auth") || strings.Contains(name, "leader-election")).To(BeTrue(), "unexpected role %s", name)
		}
	})
}
