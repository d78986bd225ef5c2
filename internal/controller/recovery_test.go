package controller

import (
	"runtime"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

var _ = Describe("Crash safety", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() {
		ns = newNamespace(nil)
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		op = startOperator(ns, Options{})
		DeferCleanup(func() { op.stop() })
	})

	It("survives a crash between creating the token and writing the Secret: one token, a working Secret", func() {
		crashed, gone := make(chan struct{}), make(chan struct{})
		DeferCleanup(func() { close(gone) })
		op.hooks.afterCreate = func() error {
			close(crashed)
			<-gone // the process "died" here: this reconcile never continues
			runtime.Goexit()
			return nil
		}
		st := serviceToken(ns, "crash")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		Eventually(crashed, timeout).Should(BeClosed())
		op.stop()
		Expect(tokenIDs(tokenName(st))).To(HaveLen(1), "the token was created before the crash")
		Expect(get(st).Status.PendingOperation).NotTo(BeNil(), "the intent was recorded before the call")

		op = startOperator(ns, Options{}) // the restarted operator
		st = waitReady(st)
		Expect(tokenIDs(tokenName(st))).To(HaveLen(1), "no duplicate token")
		Expect(credentialOf(st).works()).To(BeTrue())
		Expect(op.events.reasons(st)).To(ContainElement("SecretLost"))
	})

	It("recovers from a lost create response without leaving a duplicate", func() {
		op.hooks.afterCreate = lostResponse
		st := serviceToken(ns, "lost-create")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		Expect(tokenIDs(tokenName(st))).To(HaveLen(1))
		tokens := simTokens(tokenName(st))
		Expect(st.Status.TokenID).To(Equal(tokens[0].ID))
		Expect(credentialOf(st).works()).To(BeTrue())
		// The secret whose create response was lost keeps the grace period too:
		// that nobody holds it cannot be proven (a Secret deleted since may have).
		Expect(tokens[0].PreviousClientSecretExpiresAt).To(BeTemporally(">=", clk.Now().Add(24*time.Hour)))
	})

	It("recovers from a lost rotate response with a Secret that works", func() {
		st := serviceToken(ns, "lost-rotate")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		old := credentialOf(st)
		op.hooks.afterRotate = lostResponse
		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "now")
		st = waitFor(st, "rotation recovered", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRotateRequest == "now"
		})
		cur := credentialOf(st)
		Expect(cur.secret).NotTo(Equal(old.secret))
		Expect(cur.works()).To(BeTrue())
		Expect(tokenIDs(tokenName(st))).To(HaveLen(1))
	})

	It("converges through a storm of 429s and 5xx without duplicates", func() {
		simulator.SetFaults(sim.Faults{Rate: 0.5, Kinds: []sim.FaultKind{sim.Fault429, sim.Fault5xx}, RetryAfter: time.Second})
		DeferCleanup(func() { simulator.SetFaults(sim.Faults{}) })
		var sts []*v1alpha1.ServiceToken
		for _, name := range []string{"s1", "s2", "s3", "s4", "s5", "s6"} {
			st := serviceToken(ns, name)
			Expect(k8s.Create(ctx(), st)).To(Succeed())
			sts = append(sts, st)
		}
		time.Sleep(2 * time.Second)
		simulator.SetFaults(sim.Faults{})
		for _, st := range sts {
			st = waitFor(st, "Ready after the storm", isReady)
			Expect(tokenIDs(tokenName(st))).To(HaveLen(1))
			Expect(credentialOf(st).works()).To(BeTrue())
		}
		expectNoSecretLeaks(op, sts...)
	})
})

var _ = Describe("Accounts", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() {
		ns = newNamespace(nil)
		op = startOperator(ns, Options{})
		DeferCleanup(func() { op.stop() })
	})

	It("waits for a missing account, InProgress, and proceeds once it is created", func() {
		st := serviceToken(ns, "early")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitFor(st, "AccountNotFound", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonAccountNotFound))
		Expect(kstatus(st)).To(Equal(status.InProgressStatus))
		Expect(condition(st, v1alpha1.ConditionReady).Message).To(ContainSubstring(`CloudflareAccount "cf" not found`))

		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		st = waitReady(st)
		Expect(kstatus(st)).To(Equal(status.CurrentStatus))
		Expect(credentialOf(st).works()).To(BeTrue())
	})

	It("stalls on revoked credentials and recovers when they are fixed", func() {
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		st := serviceToken(ns, "revoked")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)

		setCredentials(ns, "revoked-token")
		c := waitAccountReason(ns, "cf", v1alpha1.ReasonCredentialsInvalid)
		Expect(c.Message).NotTo(ContainSubstring("revoked-token"))

		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "after-revoke")
		st = waitFor(st, "blocked by the account", hasReason(v1alpha1.ConditionReconciling, v1alpha1.ReasonAccountNotReady))
		Expect(credentialOf(st).works()).To(BeTrue(), "the existing credential keeps working meanwhile")

		setCredentials(ns, testAPIToken)
		st = waitFor(st, "rotated after the fix", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRotateRequest == "after-revoke"
		})
		Expect(credentialOf(st).works()).To(BeTrue())
	})

	It("refuses a ClusterCloudflareAccount whose namespaceSelector excludes the namespace", func() {
		credsNS := newNamespace(nil)
		cluster := &v1alpha1.ClusterCloudflareAccount{
			ObjectMeta: metav1.ObjectMeta{Name: "shared-" + ns},
			Spec: v1alpha1.ClusterCloudflareAccountSpec{
				AccountSettings:   v1alpha1.AccountSettings{AccountID: testAccountID, APIURL: simURL},
				CredentialsRef:    v1alpha1.ClusterCredentialsReference{Name: "cloudflare-api", Namespace: credsNS},
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"cloudflare-access": "enabled"}},
			},
		}
		Expect(k8s.Create(ctx(), cluster)).To(Succeed())
		st := serviceToken(ns, "excluded", func(st *v1alpha1.ServiceToken) {
			st.Spec.AccountRef = v1alpha1.AccountReference{Kind: v1alpha1.KindClusterCloudflareAcc, Name: cluster.Name}
		})
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitFor(st, "AccountNotAllowed", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonAccountNotAllowed))
		Expect(condition(st, v1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		Expect(tokenIDs(tokenName(st))).To(BeEmpty())

		// Widening the selector (an account change) lets the token through.
		Eventually(func() error {
			cur := &v1alpha1.ClusterCloudflareAccount{}
			Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(cluster), cur)).To(Succeed())
			cur.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
			return k8s.Update(ctx(), cur)
		}, timeout, interval).Should(Succeed())
		st = waitReady(st)
		Expect(credentialOf(st).works()).To(BeTrue())
	})
})

var _ = Describe("A zone-scoped ServiceToken", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() {
		ns = newNamespace(nil)
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		op = startOperator(ns, Options{})
		DeferCleanup(func() { op.stop() })
	})

	It("refreshes by updating the duration and rotates with a replacement token deleted after the grace period", func() {
		st := serviceToken(ns, "zone", func(st *v1alpha1.ServiceToken) {
			st.Spec.ZoneID = testZoneID
			st.Spec.Rotation = &v1alpha1.Rotation{GracePeriod: "1h"}
		})
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		first, firstID := credentialOf(st), st.Status.TokenID
		tok, _ := simToken(firstID)
		Expect(tok.ZoneID).To(Equal(testZoneID))
		Expect(first.works()).To(BeTrue())

		clk.Step(time.Hour)
		annotate(st, v1alpha1.AnnotationRefreshRequestedAt, "zr1")
		st = waitFor(st, "refreshed", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRefreshRequest == "zr1"
		})
		tok, _ = simToken(firstID)
		Expect(tok.ExpiresAt).To(BeTemporally("==", clk.Now().Add(720*time.Hour)), "PUT with the duration resets expiry")

		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "zr2")
		st = waitFor(st, "replaced", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRotateRequest == "zr2"
		})
		second := credentialOf(st)
		Expect(st.Status.TokenID).NotTo(Equal(firstID))
		Expect(st.Status.PreviousTokenID).To(Equal(firstID))
		Expect(second.works()).To(BeTrue())
		_, exists := simToken(firstID)
		Expect(exists).To(BeTrue())
		Expect(first.works()).To(BeTrue(), "the replaced token works during the grace period")

		clk.Step(time.Hour)
		poke(st)
		Consistently(first.works, time.Second, interval).Should(BeTrue(), "the replaced token works for the whole grace period")
		clk.Step(graceSlack + 2*time.Second)
		poke(st)
		st = waitFor(st, "old token deleted", func(st *v1alpha1.ServiceToken) bool { return st.Status.PreviousTokenID == "" && isReady(st) })
		_, exists = simToken(firstID)
		Expect(exists).To(BeFalse())
		Expect(first.works()).To(BeFalse())
		Expect(second.works()).To(BeTrue())
		Expect(tokenIDs(tokenName(st))).To(HaveLen(1))
	})
})

func setCredentials(ns, token string) {
	Eventually(func() error {
		s := &corev1.Secret{}
		if err := k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "cloudflare-api"}, s); err != nil {
			return err
		}
		s.Data = map[string][]byte{"apiToken": []byte(token)}
		return k8s.Update(ctx(), s)
	}, timeout, interval).Should(Succeed())
}

func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}
