package controller

import (
	"encoding/json"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// Credentials cannot be turned into an exfiltration channel: an account
// reads only a Secret that opted in, and sends it only to an allowed URL.
var _ = Describe("An account's credentials", func() {
	type refusal struct {
		cluster  bool
		optedIn  bool
		spy      func() *spy
		reason   string
		message  string
		fixLabel bool // labelling the Secret makes it Ready
	}
	accountOf := func(ns string, r refusal) (client.Object, v1alpha1.AccountReference) {
		settings := v1alpha1.AccountSettings{AccountID: testAccountID, APIURL: r.spy().URL}
		if r.cluster {
			name := "cluster-" + ns
			DeferCleanup(func() {
				_ = k8s.Delete(ctx(), &v1alpha1.ClusterCloudflareAccount{ObjectMeta: metav1.ObjectMeta{Name: name}})
			})
			return &v1alpha1.ClusterCloudflareAccount{ObjectMeta: metav1.ObjectMeta{Name: name},
					Spec: v1alpha1.ClusterCloudflareAccountSpec{AccountSettings: settings,
						CredentialsRef: v1alpha1.ClusterCredentialsReference{Name: "creds", Namespace: ns}}},
				v1alpha1.AccountReference{Kind: v1alpha1.KindClusterCloudflareAcc, Name: name}
		}
		return &v1alpha1.CloudflareAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf"},
				Spec: v1alpha1.CloudflareAccountSpec{AccountSettings: settings, CredentialsRef: v1alpha1.CredentialsReference{Name: "creds"}}},
			v1alpha1.AccountReference{Name: "cf"}
	}
	readyOf := func(obj client.Object) *metav1.Condition {
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		return meta.FindStatusCondition(accountStatus(obj).Conditions, v1alpha1.ConditionReady)
	}

	DescribeTable("are refused before anything is sent",
		func(r refusal) {
			ns := newNamespace(nil)
			op := startOperator(ns, Options{})
			DeferCleanup(func() { op.stop() })
			secret := credentialsSecret(ns, "creds", testAPIToken)
			if !r.optedIn {
				secret.Labels = nil
			}
			Expect(k8s.Create(ctx(), secret)).To(Succeed())
			spy := r.spy()
			before := spy.requests.Load()
			acct, ref := accountOf(ns, r)
			Expect(k8s.Create(ctx(), acct)).To(Succeed())
			st := serviceToken(ns, "app", func(st *v1alpha1.ServiceToken) { st.Spec.AccountRef = ref })
			Expect(k8s.Create(ctx(), st)).To(Succeed())

			var ready *metav1.Condition
			Eventually(func() string {
				if ready = readyOf(acct); ready == nil {
					return ""
				}
				return ready.Reason
			}, timeout, interval).Should(Equal(r.reason))
			Expect(ready.Status).To(Equal(metav1.ConditionFalse))
			Expect(ready.Message).To(ContainSubstring(r.message))
			waitFor(st, "Ready=False, AccountNotReady, with the account's message", func(st *v1alpha1.ServiceToken) bool {
				c := condition(st, v1alpha1.ConditionReady)
				return c != nil && c.Reason == v1alpha1.ReasonAccountNotReady && strings.Contains(c.Message, r.message)
			})
			Consistently(spy.requests.Load, "1s", interval).Should(Equal(before), "nothing is sent to the account's API URL")
			Expect(tokenIDs(tokenName(st))).To(BeEmpty())
			raw, err := json.Marshal(acct)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(raw)).NotTo(ContainSubstring(testAPIToken))
			for _, e := range op.events.all() {
				Expect(e.Note).NotTo(ContainSubstring(testAPIToken))
			}

			if r.fixLabel {
				By("labelling the Secret, the account and its ServiceToken become Ready")
				Eventually(func() error {
					s := &corev1.Secret{}
					if err := k8s.Get(ctx(), client.ObjectKeyFromObject(secret), s); err != nil {
						return err
					}
					s.Labels = credentialsLabel()
					return k8s.Update(ctx(), s)
				}, timeout, interval).Should(Succeed())
				Eventually(func() string { return readyOf(acct).Reason }, timeout, interval).Should(Equal(v1alpha1.ReasonReady))
				Expect(credentialOf(waitReady(st)).works()).To(BeTrue())
				Expect(spy.requests.Load()).To(BeNumerically(">", before))
			}
		},
		Entry("a CloudflareAccount whose Secret did not opt in", refusal{
			spy: func() *spy { return allowedSpy }, reason: v1alpha1.ReasonCredentialsNotOptedIn,
			message: `not labelled access.servicetoken.dev/credentials=true`, fixLabel: true}),
		Entry("a ClusterCloudflareAccount whose Secret did not opt in", refusal{cluster: true,
			spy: func() *spy { return allowedSpy }, reason: v1alpha1.ReasonCredentialsNotOptedIn,
			message: `not labelled access.servicetoken.dev/credentials=true`, fixLabel: true}),
		Entry("a CloudflareAccount whose apiURL the operator does not allow", refusal{optedIn: true,
			spy: func() *spy { return refusedSpy }, reason: v1alpha1.ReasonAPIURLNotAllowed, message: "--allowed-api-urls"}),
		Entry("a ClusterCloudflareAccount whose apiURL the operator does not allow", refusal{cluster: true, optedIn: true,
			spy: func() *spy { return refusedSpy }, reason: v1alpha1.ReasonAPIURLNotAllowed, message: "--allowed-api-urls"}),
	)
})

// An account object stands for one Cloudflare account: a ServiceToken whose
// token lives in one account never follows its account object to another.
var _ = Describe("A ServiceToken whose account object now names another Cloudflare account", func() {
	It("stops with AccountChanged, creating and deleting nothing in either account, until released", func() {
		ns := newNamespace(nil)
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		op := startOperator(ns, Options{})
		DeferCleanup(func() { op.stop() })
		st := serviceToken(ns, "app")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		Expect(st.Status.AccountID).To(Equal(testAccountID), "status records the account the token lives in")
		tokenID := st.Status.TokenID

		By("replacing the account object by one naming another Cloudflare account")
		old := &v1alpha1.CloudflareAccount{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "cf"}, old)).To(Succeed())
		old.Finalizers = nil // as a person forcing it out would
		Expect(k8s.Update(ctx(), old)).To(Succeed())
		Expect(k8s.Delete(ctx(), old)).To(Succeed())
		Eventually(func() error {
			return k8s.Get(ctx(), client.ObjectKeyFromObject(old), &v1alpha1.CloudflareAccount{})
		}, timeout, interval).ShouldNot(Succeed())
		other := cfAccount(ns, "cf")
		other.Spec.AccountID = testOtherAccountID
		Expect(k8s.Create(ctx(), other)).To(Succeed())
		waitAccountReason(ns, "cf", v1alpha1.ReasonReady)

		got := waitFor(st, "Ready=False, AccountChanged", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonAccountChanged))
		ready := condition(got, v1alpha1.ConditionReady)
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Message).To(And(ContainSubstring(testAccountID), ContainSubstring(testOtherAccountID),
			ContainSubstring(v1alpha1.AnnotationForceDelete)))
		Expect(condition(got, v1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		Expect(got.Status.AccountID).To(Equal(testAccountID))
		Expect(got.Status.TokenID).To(Equal(tokenID))
		Eventually(func() []string { return op.events.reasons(st) }, timeout, interval).Should(ContainElement(v1alpha1.ReasonAccountChanged))

		noTokenIn := func(account string) {
			GinkgoHelper()
			for _, t := range simulator.Tokens() {
				Expect(t.AccountID == account && strings.HasPrefix(t.Name, ns+"/app")).To(BeFalse(), "a token was made in account %s", account)
			}
		}
		poke(st)
		Consistently(func() bool { _, ok := simToken(tokenID); return ok }, "1s", interval).Should(BeTrue())
		noTokenIn(testOtherAccountID)
		Expect(tokenIDs(tokenName(st))).To(Equal([]string{tokenID}), "no second token, in either account")

		By("deleting the ServiceToken: the token is not deleted through the other account")
		Expect(k8s.Delete(ctx(), get(st))).To(Succeed())
		Consistently(func() error { return k8s.Get(ctx(), client.ObjectKeyFromObject(st), &v1alpha1.ServiceToken{}) },
			"2s", interval).Should(Succeed(), "the deletion waits")
		_, ok := simToken(tokenID)
		Expect(ok).To(BeTrue(), "the token stays in its account")

		By("releasing it with the force-delete annotation")
		annotate(st, v1alpha1.AnnotationForceDelete, "true")
		Eventually(func() error { return k8s.Get(ctx(), client.ObjectKeyFromObject(st), &v1alpha1.ServiceToken{}) },
			timeout, interval).ShouldNot(Succeed())
		_, ok = simToken(tokenID)
		Expect(ok).To(BeTrue(), "released without touching Cloudflare")
		noTokenIn(testOtherAccountID)
		Expect(op.events.reasons(st)).NotTo(ContainElement("Deleted"))
	})
})

// Two installs of the operator in one cluster (each watching its own
// namespaces) may share a ClusterCloudflareAccount: each keeps its own
// finalizer on it, so one install releasing its hold never releases the
// other's while that one's ServiceTokens still need the account.
var _ = Describe("Two installs sharing a ClusterCloudflareAccount", func() {
	It("each keep their own finalizer, and the account goes only when neither holds a token through it", func() {
		nsA, nsB := newNamespace(nil), newNamespace(nil)
		installAs := func(id string) func(*SetupOptions) { return func(o *SetupOptions) { o.InstallID = id } }
		opA := startOperator(nsA, Options{}, installAs("install-a"))
		DeferCleanup(func() { opA.stop() })
		opB := startOperator(nsB, Options{}, installAs("install-b"))
		DeferCleanup(func() { opB.stop() })
		finA, err := AccountFinalizerFor("install-a")
		Expect(err).NotTo(HaveOccurred())
		finB, err := AccountFinalizerFor("install-b")
		Expect(err).NotTo(HaveOccurred())

		shared := &v1alpha1.ClusterCloudflareAccount{ObjectMeta: metav1.ObjectMeta{Name: "shared-" + nsA},
			Spec: v1alpha1.ClusterCloudflareAccountSpec{
				AccountSettings: v1alpha1.AccountSettings{AccountID: testAccountID, APIURL: simURL},
				CredentialsRef:  v1alpha1.ClusterCredentialsReference{Name: "cloudflare-api", Namespace: nsA}}}
		Expect(k8s.Create(ctx(), shared)).To(Succeed())
		DeferCleanup(func() { // never leave an account stuck behind a failed spec
			acc := &v1alpha1.ClusterCloudflareAccount{}
			if k8s.Get(ctx(), client.ObjectKeyFromObject(shared), acc) == nil {
				acc.Finalizers = nil
				_ = k8s.Update(ctx(), acc)
				_ = k8s.Delete(ctx(), acc)
			}
		})
		ref := v1alpha1.AccountReference{Kind: v1alpha1.KindClusterCloudflareAcc, Name: shared.Name}
		stA := serviceToken(nsA, "app", func(st *v1alpha1.ServiceToken) { st.Spec.AccountRef = ref })
		stB := serviceToken(nsB, "app", func(st *v1alpha1.ServiceToken) { st.Spec.AccountRef = ref })
		Expect(k8s.Create(ctx(), stA)).To(Succeed())
		Expect(k8s.Create(ctx(), stB)).To(Succeed())
		waitReady(stA)
		waitReady(stB)
		finalizers := func() []string {
			acc := &v1alpha1.ClusterCloudflareAccount{}
			if err := k8s.Get(ctx(), client.ObjectKeyFromObject(shared), acc); err != nil {
				return nil
			}
			return acc.Finalizers
		}
		Eventually(finalizers, timeout, interval).Should(ConsistOf(finA, finB), "both installs added theirs; neither dropped the other's")

		By("deleting the account and install A's ServiceToken: A lets go, B still holds it")
		Expect(k8s.Delete(ctx(), shared)).To(Succeed())
		Expect(k8s.Delete(ctx(), get(stA))).To(Succeed())
		Eventually(func() error { return k8s.Get(ctx(), client.ObjectKeyFromObject(stA), &v1alpha1.ServiceToken{}) },
			timeout, interval).ShouldNot(Succeed())
		Eventually(finalizers, timeout, interval).Should(ConsistOf(finB))
		Consistently(finalizers, "1s", interval).Should(ConsistOf(finB), "install A never removes B's finalizer")

		By("install B's ServiceToken can still delete its token through the account")
		idB := get(stB).Status.TokenID
		Expect(k8s.Delete(ctx(), get(stB))).To(Succeed())
		Eventually(func() error { return k8s.Get(ctx(), client.ObjectKeyFromObject(stB), &v1alpha1.ServiceToken{}) },
			timeout, interval).ShouldNot(Succeed())
		_, exists := simToken(idB)
		Expect(exists).To(BeFalse(), "deleted in Cloudflare through the account B still held")
		Eventually(func() error {
			return k8s.Get(ctx(), client.ObjectKeyFromObject(shared), &v1alpha1.ClusterCloudflareAccount{})
		},
			timeout, interval).ShouldNot(Succeed(), "the account goes once neither install holds it")
	})
})

func TestAccountFinalizerFor(t *testing.T) {
	g := NewWithT(t)
	fin, err := AccountFinalizerFor("")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fin).To(Equal(v1alpha1.AccountFinalizer), "no install ID: the finalizer of earlier versions")
	fin, err = AccountFinalizerFor("servicetoken-system")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fin).To(Equal("access.servicetoken.dev/in-use.servicetoken-system"))
	long := strings.Repeat("a", 63)
	fin, err = AccountFinalizerFor(long)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(strings.SplitN(fin, "/", 2)[1])).To(BeNumerically("<=", 63), "a valid finalizer name")
	other, _ := AccountFinalizerFor(long[:62] + "b")
	g.Expect(other).NotTo(Equal(fin), "long IDs stay distinct")
	for _, bad := range []string{"Upper", "-lead", "trail-", "a/b", "a b"} {
		_, err := AccountFinalizerFor(bad)
		g.Expect(err).To(HaveOccurred(), bad)
	}
}
