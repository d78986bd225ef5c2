package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The values users expect of an operator chart, each rendered and checked
// where it must land.

func TestExtraEnvVolumesAndMounts(t *testing.T) {
	g := NewWithT(t)
	d := deployments(t, render(t,
		"--set-json", `extraEnv=[{"name":"HTTPS_PROXY","value":"http://proxy.internal:3128"},{"name":"NO_PROXY","value":"10.0.0.0/8,.svc"}]`,
		"--set-json", `extraVolumes=[{"name":"proxy-ca","configMap":{"name":"proxy-ca"}}]`,
		"--set-json", `extraVolumeMounts=[{"name":"proxy-ca","mountPath":"/etc/ssl/certs/proxy-ca.pem","subPath":"ca.pem","readOnly":true}]`,
	))[0]
	pod := d.Spec.Template.Spec
	g.Expect(pod.Volumes).To(ConsistOf(corev1.Volume{Name: "proxy-ca",
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "proxy-ca"}}}}))
	c := pod.Containers[0]
	g.Expect(c.VolumeMounts).To(ConsistOf(corev1.VolumeMount{Name: "proxy-ca", MountPath: "/etc/ssl/certs/proxy-ca.pem", SubPath: "ca.pem", ReadOnly: true}))
	g.Expect(c.Env).To(ContainElements(
		corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy.internal:3128"},
		corev1.EnvVar{Name: "NO_PROXY", Value: "10.0.0.0/8,.svc"}))
	g.Expect(c.Env[0].Name).To(Equal("GOMEMLIMIT"), "the chart's own variable stays")
	g.Expect(podSecurityViolations(t, &d.Spec.Template)).To(BeEmpty(), "a ConfigMap volume keeps the pod restricted")

	d = deployments(t, render(t))[0]
	g.Expect(d.Spec.Template.Spec.Volumes).To(BeEmpty())
	g.Expect(d.Spec.Template.Spec.Containers[0].VolumeMounts).To(BeEmpty())

	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(readme)).To(And(ContainSubstring("HTTPS_PROXY"), ContainSubstring("NO_PROXY")), "the README says how to use a proxy")
}

func TestAnnotationsLabelsAndRevisionHistory(t *testing.T) {
	g := NewWithT(t)
	objs := render(t, append(set("podAnnotations.checksum/config=abc", "commonLabels.team=platform", "revisionHistoryLimit=3",
		"serviceMonitor.enabled=true", "prometheusRule.enabled=true", "networkPolicy.enabled=true"),
		"--set-string", `deploymentAnnotations.reloader\.stakater\.com/auto=true`,
		"--set-json", `crds.annotations={"argocd.argoproj.io/sync-options":"Prune=false"}`)...)
	d := deployments(t, objs)[0]
	g.Expect(d.Annotations).To(HaveKeyWithValue("reloader.stakater.com/auto", "true"))
	g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue("checksum/config", "abc"))
	g.Expect(d.Spec.Template.Annotations).NotTo(HaveKey("reloader.stakater.com/auto"), "deployment annotations stay on the Deployment")
	g.Expect(*d.Spec.RevisionHistoryLimit).To(BeEquivalentTo(3))
	for _, o := range objs {
		g.Expect(o.u.GetLabels()).To(HaveKeyWithValue("team", "platform"), "commonLabels on %s", o)
	}
	g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("team", "platform"))
	g.Expect(d.Spec.Selector.MatchLabels).NotTo(HaveKey("team"), "selectors are immutable: commonLabels stay out")
	for name, c := range crds(t, objs) {
		g.Expect(c.Annotations).To(HaveKeyWithValue("argocd.argoproj.io/sync-options", "Prune=false"), name)
		g.Expect(c.Annotations).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"), name)
	}
	for name, c := range crds(t, render(t, append(set("crds.keep=false"), "--set-json", `crds.annotations={"a":"b"}`)...)) {
		g.Expect(c.Annotations).To(HaveKeyWithValue("a", "b"), name)
		g.Expect(c.Annotations).NotTo(HaveKey("helm.sh/resource-policy"), name)
	}

	d = deployments(t, render(t))[0]
	g.Expect(*d.Spec.RevisionHistoryLimit).To(BeEquivalentTo(10))
	g.Expect(d.Annotations).To(BeEmpty())
}

func TestExtraObjects(t *testing.T) {
	g := NewWithT(t)
	objs := render(t, "--set-json", `extraObjects=[`+
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"{{ .Release.Name }}-map","namespace":"{{ .Release.Namespace }}"}},`+
		`"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-a-string\n  namespace: {{ .Release.Namespace }}\ndata:\n  image: {{ .Values.image.repository }}"]`)
	maps := map[string]corev1.ConfigMap{}
	for _, o := range ofKind(objs, "ConfigMap") {
		var cm corev1.ConfigMap
		g.Expect(o.decode(&cm)).To(Succeed())
		maps[cm.Name] = cm
	}
	g.Expect(maps).To(HaveLen(2))
	g.Expect(maps).To(HaveKey("st-map"), "a map is templated")
	g.Expect(maps["st-map"].Namespace).To(Equal(releaseNamespace))
	g.Expect(maps["from-a-string"].Data).To(HaveKeyWithValue("image", "ghcr.io/servicetoken-operator/servicetoken-operator"), "a string is templated")
	g.Expect(ofKind(render(t), "ConfigMap")).To(BeEmpty())
}

func TestNetworkPolicy(t *testing.T) {
	g := NewWithT(t)
	g.Expect(ofKind(render(t), "NetworkPolicy")).To(BeEmpty(), "off by default")

	policy := func(args ...string) networkingv1.NetworkPolicy {
		objs := render(t, append(set("networkPolicy.enabled=true"), args...)...)
		nps := ofKind(objs, "NetworkPolicy")
		g.Expect(nps).To(HaveLen(1))
		var np networkingv1.NetworkPolicy
		g.Expect(nps[0].decode(&np)).To(Succeed())
		sel := labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels)
		g.Expect(sel.Matches(labels.Set(deployments(t, objs)[0].Spec.Template.Labels))).To(BeTrue(), "it selects the manager pods")
		g.Expect(np.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
		return np
	}
	port := func(p intstr.IntOrString, proto corev1.Protocol) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Port: &p, Protocol: &proto}
	}
	tcp := func(p int) networkingv1.NetworkPolicyPort {
		return port(intstr.FromInt32(int32(p)), corev1.ProtocolTCP)
	}

	np := policy()
	g.Expect(np.Spec.Ingress).To(ConsistOf(
		networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromString("metrics"), corev1.ProtocolTCP)}},
		networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{port(intstr.FromString("probes"), corev1.ProtocolTCP)}}))
	g.Expect(np.Spec.Egress).To(ConsistOf(
		networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{
			port(intstr.FromInt32(53), corev1.ProtocolUDP), port(intstr.FromInt32(53), corev1.ProtocolTCP)}},
		networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{tcp(443), tcp(6443)}},
		networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{tcp(443)}}),
		"DNS, the API server and Cloudflare; nothing else")

	np = policy(append(set("networkPolicy.egress.apiServer.cidrs={10.96.0.1/32}", "networkPolicy.egress.cloudflare.cidrs={104.16.0.0/13}",
		"networkPolicy.egress.cloudflare.ports={3128}", "networkPolicy.egress.dns=false", "metrics.enabled=false"),
		"--set-json", `networkPolicy.ingress.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]`)...)
	g.Expect(np.Spec.Egress).To(ConsistOf(
		networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{tcp(443), tcp(6443)},
			To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.96.0.1/32"}}}},
		networkingv1.NetworkPolicyEgressRule{Ports: []networkingv1.NetworkPolicyPort{tcp(3128)},
			To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "104.16.0.0/13"}}}}))
	g.Expect(np.Spec.Ingress).To(HaveLen(1), "no metrics port, no metrics rule")

	np = policy("--set-json", `networkPolicy.ingress.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]`)
	g.Expect(np.Spec.Ingress[0].From).To(HaveLen(1))
	g.Expect(np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels).To(HaveKeyWithValue("kubernetes.io/metadata.name", "monitoring"))
}

// TestCRDCategoriesAndColumns: `kubectl get cloudflare` lists every kind,
// and no column prints "<invalid>": kubectl's date type only shows ages, so
// a time that may lie in the future must be a string.
func TestCRDCategoriesAndColumns(t *testing.T) {
	g := NewWithT(t)
	pastTimes := map[string]bool{".metadata.creationTimestamp": true, ".status.lastRotationTime": true}
	for name, c := range configCRDs(t) {
		g.Expect(c.Spec.Names.Categories).To(ContainElement("cloudflare"), name)
		for _, v := range c.Spec.Versions {
			for _, col := range v.AdditionalPrinterColumns {
				if col.Type == "date" {
					g.Expect(pastTimes).To(HaveKey(col.JSONPath), "%s column %s: type date on a time that may be in the future prints <invalid>", name, col.Name)
				}
			}
		}
	}
	st := configCRDs(t)["servicetokens.access.servicetoken.dev"]
	cols := map[string]string{}
	for _, col := range st.Spec.Versions[0].AdditionalPrinterColumns {
		cols[col.Name] = col.JSONPath + " " + col.Type + " " + strings.Repeat("wide", int(col.Priority))
	}
	g.Expect(cols).To(HaveKeyWithValue("Expires", ".status.expiresAt string "))
	g.Expect(cols).To(HaveKeyWithValue("Renews", ".status.renewalTime string wide"))
	g.Expect(cols).To(HaveKeyWithValue("Rotated", ".status.lastRotationTime date wide"))
}
