package v1alpha1_test

import (
	"fmt"
	"strings"
	"sync/atomic"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const validAccountID = "0123456789abcdef0123456789abcdef"

var nameSeq atomic.Int64

// object builds an unstructured object of kind with the given spec (YAML) in
// namespace "default" (none for the cluster-scoped kind), with a unique name.
func object(kind, specYAML string) *unstructured.Unstructured {
	spec := map[string]any{}
	Expect(yaml.Unmarshal([]byte(specYAML), &spec)).To(Succeed())
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion("access.servicetoken.dev/v1alpha1")
	u.SetKind(kind)
	u.SetName(fmt.Sprintf("%s-%d", strings.ToLower(kind), nameSeq.Add(1)))
	if kind != "ClusterCloudflareAccount" {
		u.SetNamespace("default")
	}
	return u
}

const tokenBase = `
accountRef: {name: prod}
`

var _ = Describe("The CRD schemas", func() {
	It("accept a minimal ServiceToken and both account kinds", func() {
		Expect(k8sClient.Create(ctx, object("ServiceToken", tokenBase))).To(Succeed())
		Expect(k8sClient.Create(ctx, object("CloudflareAccount", `
accountID: `+validAccountID+`
credentialsRef: {name: cloudflare-api}`))).To(Succeed())
		Expect(k8sClient.Create(ctx, object("ClusterCloudflareAccount", `
accountID: `+validAccountID+`
credentialsRef: {name: cloudflare-api, namespace: servicetoken-system}`))).To(Succeed())
	})

	It("accept a ServiceToken that sets every field", func() {
		Expect(k8sClient.Create(ctx, object("ServiceToken", `
accountRef: {kind: ClusterCloudflareAccount, name: prod}
zoneID: 00112233445566778899aabbccddeeff
tokenName: "payments / api"
duration: 720h
enabled: false
renewal: {before: 240h, action: Rotate}
rotation: {every: 168h, gracePeriod: 1h}
secret:
  name: payments-cf-access
  keys: {clientID: CF_ACCESS_CLIENT_ID, clientSecret: CF_ACCESS_CLIENT_SECRET}
  labels: {team: payments}
  annotations: {reloader.stakater.com/match: "true"}
deletionPolicy: Orphan`))).To(Succeed())
	})

	It("accept forever tokens with any renewal.before, and a zero grace period", func() {
		Expect(k8sClient.Create(ctx, object("ServiceToken", tokenBase+`
duration: forever
renewal: {before: 100000h}
rotation: {gracePeriod: 0s}`))).To(Succeed())
	})

	DescribeTable("reject invalid objects with a message that says what to fix",
		func(kind, specYAML, message string) {
			err := k8sClient.Create(ctx, object(kind, specYAML))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("a ServiceToken without accountRef.name", "ServiceToken",
			`accountRef: {kind: CloudflareAccount}`, "spec.accountRef.name: Required value"),
		Entry("an unknown accountRef.kind", "ServiceToken",
			`accountRef: {kind: Account, name: prod}`, `spec.accountRef.kind: Unsupported value: "Account"`),
		Entry("a duration that is not a Go duration", "ServiceToken",
			tokenBase+`duration: 1 year`, "spec.duration: Invalid value"),
		Entry("a negative duration", "ServiceToken",
			tokenBase+`duration: -5m`, "spec.duration: Invalid value"),
		Entry("a duration under a minute", "ServiceToken",
			tokenBase+`duration: 30s`, "duration must be at least 1m, or forever"),
		Entry("a duration with a unit Cloudflare does not know", "ServiceToken",
			tokenBase+`duration: 2d`, "spec.duration: Invalid value"),
		Entry("renewal.before as long as duration", "ServiceToken",
			tokenBase+"duration: 24h\nrenewal: {before: 24h}", "renewal.before must be shorter than duration"),
		Entry("renewal.before longer than the default duration", "ServiceToken",
			tokenBase+`renewal: {before: 9000h}`, "renewal.before must be shorter than duration"),
		Entry("renewal.before of zero", "ServiceToken",
			tokenBase+`renewal: {before: 0s}`, "renewal.before must be greater than 0"),
		Entry("an unknown renewal.action", "ServiceToken",
			tokenBase+`renewal: {action: Renew}`, `spec.renewal.action: Unsupported value: "Renew"`),
		Entry("a negative rotation.gracePeriod", "ServiceToken",
			tokenBase+`rotation: {gracePeriod: -1h}`, "spec.rotation.gracePeriod: Invalid value"),
		Entry("rotation.every under a minute", "ServiceToken",
			tokenBase+`rotation: {every: 30s}`, "rotation.every must be at least 1m"),
		Entry("a grace period longer than rotation.every", "ServiceToken",
			tokenBase+`rotation: {every: 1h, gracePeriod: 2h}`, "rotation.gracePeriod must not be longer than rotation.every"),
		Entry("an unknown deletionPolicy", "ServiceToken",
			tokenBase+`deletionPolicy: Keep`, `spec.deletionPolicy: Unsupported value: "Keep"`),
		Entry("a Secret name that is not DNS-1123", "ServiceToken",
			tokenBase+`secret: {name: Bad_Name}`, "spec.secret.name: Invalid value"),
		Entry("a Secret key with invalid characters", "ServiceToken",
			tokenBase+`secret: {keys: {clientID: "client id!"}}`, "spec.secret.keys.clientID: Invalid value"),
		Entry("the same Secret key for ID and secret", "ServiceToken",
			tokenBase+`secret: {keys: {clientID: creds, clientSecret: creds}}`, "secret.keys.clientID and secret.keys.clientSecret must be different"),
		Entry("a clientSecret key equal to the default clientID key", "ServiceToken",
			tokenBase+`secret: {keys: {clientSecret: client_id}}`, "secret.keys.clientID and secret.keys.clientSecret must be different"),
		Entry("a zoneID that is not 32 hex characters", "ServiceToken",
			tokenBase+`zoneID: example.com`, "spec.zoneID: Invalid value"),
		Entry("an empty tokenName", "ServiceToken",
			tokenBase+`tokenName: ""`, "spec.tokenName: Invalid value"),
		Entry("a tokenName over 255 characters", "ServiceToken",
			tokenBase+`tokenName: `+strings.Repeat("x", 256), "spec.tokenName: Too long"),
		Entry("an accountID that is not 32 hex characters", "CloudflareAccount",
			`{accountID: "1234", credentialsRef: {name: cf}}`, "spec.accountID: Invalid value"),
		Entry("an account without credentialsRef.name", "CloudflareAccount",
			`{accountID: `+validAccountID+`, credentialsRef: {apiTokenKey: token}}`, "spec.credentialsRef.name: Required value"),
		Entry("an apiKeyKey without emailKey", "CloudflareAccount",
			`{accountID: `+validAccountID+`, credentialsRef: {name: cf, apiKeyKey: key}}`, "apiKeyKey and emailKey must be set together"),
		Entry("both credential schemes", "CloudflareAccount",
			`{accountID: `+validAccountID+`, credentialsRef: {name: cf, apiTokenKey: t, apiKeyKey: k, emailKey: e}}`, "set either apiTokenKey or apiKeyKey + emailKey, not both"),
		Entry("an apiURL that is not http(s)", "CloudflareAccount",
			`{accountID: `+validAccountID+`, credentialsRef: {name: cf}, apiURL: "ftp://proxy"}`, "spec.apiURL: Invalid value"),
		Entry("a rateLimit of zero requests", "CloudflareAccount",
			`{accountID: `+validAccountID+`, credentialsRef: {name: cf}, rateLimit: {requests: 0}}`, "spec.rateLimit.requests: Invalid value"),
		Entry("a rateLimit period under a second", "CloudflareAccount",
			`{accountID: `+validAccountID+`, credentialsRef: {name: cf}, rateLimit: {period: 500ms}}`, "rateLimit.period must be at least 1s"),
		Entry("a cluster account whose credentialsRef has no namespace", "ClusterCloudflareAccount",
			`{accountID: `+validAccountID+`, credentialsRef: {name: cf}}`, "spec.credentialsRef.namespace: Required value"),
		Entry("a cluster account with a malformed namespaceSelector", "ClusterCloudflareAccount",
			`{accountID: `+validAccountID+`, credentialsRef: {name: cf, namespace: ops}, namespaceSelector: {matchLabels: "team"}}`, "spec.namespaceSelector.matchLabels"),
	)

	DescribeTable("reject changes to immutable fields",
		func(initial, changed, message string) {
			obj := object("ServiceToken", initial)
			Expect(k8sClient.Create(ctx, obj)).To(Succeed())
			update := object("ServiceToken", changed)
			update.SetName(obj.GetName())
			update.SetResourceVersion(obj.GetResourceVersion())
			err := k8sClient.Update(ctx, update)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("accountRef.name", tokenBase, `accountRef: {name: staging}`, "accountRef is immutable"),
		Entry("accountRef.kind", tokenBase, `accountRef: {kind: ClusterCloudflareAccount, name: prod}`, "accountRef is immutable"),
		Entry("zoneID changed", tokenBase+`zoneID: 00112233445566778899aabbccddeeff`,
			tokenBase+`zoneID: ffeeddccbbaa99887766554433221100`, "zoneID is immutable"),
		Entry("zoneID added", tokenBase, tokenBase+`zoneID: 00112233445566778899aabbccddeeff`, "zoneID is immutable"),
		Entry("zoneID removed", tokenBase+`zoneID: 00112233445566778899aabbccddeeff`, tokenBase, "zoneID is immutable"),
	)

	DescribeTable("refuse a change of an account's accountID on the real API server",
		func(kind, spec, changed string) {
			obj := object(kind, spec)
			Expect(k8sClient.Create(ctx, obj)).To(Succeed())
			update := object(kind, changed)
			update.SetName(obj.GetName())
			update.SetResourceVersion(obj.GetResourceVersion())
			err := k8sClient.Update(ctx, update)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring("accountID is immutable: create another account object"))

			update = object(kind, spec+"\napiURL: https://api.cloudflare.com/client/v4")
			update.SetName(obj.GetName())
			update.SetResourceVersion(obj.GetResourceVersion())
			Expect(k8sClient.Update(ctx, update)).To(Succeed(), "the other fields stay mutable")
		},
		Entry("CloudflareAccount", "CloudflareAccount", "accountID: "+validAccountID+"\ncredentialsRef: {name: cf}",
			"accountID: ffffffffffffffffffffffffffffffff\ncredentialsRef: {name: cf}"),
		Entry("ClusterCloudflareAccount", "ClusterCloudflareAccount", "accountID: "+validAccountID+"\ncredentialsRef: {name: cf, namespace: ops}",
			"accountID: ffffffffffffffffffffffffffffffff\ncredentialsRef: {name: cf, namespace: ops}"),
	)

	It("allow the mutable fields to change", func() {
		obj := object("ServiceToken", tokenBase)
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		update := object("ServiceToken", tokenBase+`
tokenName: renamed
duration: 48h
enabled: false
renewal: {before: 1h, action: Rotate}
rotation: {every: 24h, gracePeriod: 1h}
secret: {name: elsewhere}
deletionPolicy: Orphan`)
		update.SetName(obj.GetName())
		update.SetResourceVersion(obj.GetResourceVersion())
		Expect(k8sClient.Update(ctx, update)).To(Succeed())
	})
})
