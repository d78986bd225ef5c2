package controller

import (
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// Cloudflare's error classes as a user meets them (docs/cloudflare-permissions.md).
var _ = Describe("Cloudflare's errors", func() {
	var (
		ns string
		op *operator
	)
	BeforeEach(func() {
		ns = newNamespace(nil)
		op = startOperator(ns, Options{})
		DeferCleanup(func() { op.stop() })
	})

	accountReady := func(reason string) *metav1.Condition {
		GinkgoHelper()
		return waitAccountReason(ns, "cf", reason)
	}
	It("finds a read-only API token with a write probe, before any ServiceToken writes", func() {
		probesBefore := callsOn("refresh", probeToken) // the simulator's log spans the suite
		setCredentials(ns, testReadOnlyToken)
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		c := accountReady(v1alpha1.ReasonCredentialsReadOnly)
		Expect(c.Message).To(ContainSubstring("Access: Service Tokens Write"))
		Expect(c.Message).NotTo(ContainSubstring(testReadOnlyToken))

		st := serviceToken(ns, "ro")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		waitFor(st, "blocked by the account, not failing a write", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonAccountNotReady))
		Expect(tokenIDs(tokenName(st))).To(BeEmpty())

		setCredentials(ns, testAPIToken)
		accountReady(v1alpha1.ReasonReady)
		Expect(credentialOf(waitReady(st)).works()).To(BeTrue())

		// The verdict is kept with the Secret's version: a restarted
		// operator does not probe the same credentials again.
		acc := &v1alpha1.CloudflareAccount{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "cf"}, acc)).To(Succeed())
		Expect(acc.Status.WriteAccessVerified).To(MatchRegexp(`^[0-9a-f-]{36}/\d+$`))
		probes := callsOn("refresh", probeToken)
		Expect(probes-probesBefore).To(Equal(2), "one probe per API token: the read-only one, then the writer")
		op.stop()
		op = startOperator(ns, Options{})
		annotate(st, "test/poke", "after-restart") // the ServiceToken reconciles, so the account was read
		waitReady(st)
		Eventually(func() error { // wake the account itself
			cur := &v1alpha1.CloudflareAccount{}
			Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "cf"}, cur)).To(Succeed())
			if cur.Annotations == nil {
				cur.Annotations = map[string]string{}
			}
			cur.Annotations["test/poke"] = "after-restart"
			return k8s.Update(ctx(), cur)
		}, timeout, interval).Should(Succeed())
		Consistently(func() int { return callsOn("refresh", probeToken) }, 2*time.Second, interval).Should(Equal(probes))
	})

	It("says which header is malformed (code 6003) without repeating the credential", func() {
		const malformed = "not a token"
		setCredentials(ns, malformed)
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		c := accountReady(v1alpha1.ReasonCredentialsInvalid)
		Expect(c.Message).To(ContainSubstring("Invalid format for Authorization header"))
		Expect(c.Message).NotTo(ContainSubstring(malformed))
	})

	It("takes an unknown account (code 7003) for unreachable, creating nothing until the account is made again right", func() {
		bad := cfAccount(ns, "cf")
		bad.Spec.AccountID = "00000000000000000000000000000bad"
		Expect(k8s.Create(ctx(), bad)).To(Succeed())
		c := accountReady(v1alpha1.ReasonAccountUnreachable)
		Expect(c.Message).To(ContainSubstring("spec.accountID"))
		stalled := func() metav1.ConditionStatus {
			acc := &v1alpha1.CloudflareAccount{}
			Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(bad), acc)).To(Succeed())
			if c := meta.FindStatusCondition(acc.Status.Conditions, v1alpha1.ConditionStalled); c != nil {
				return c.Status
			}
			return ""
		}
		Expect(stalled()).To(Equal(metav1.ConditionFalse), "a first 7003 is checked again before it counts as the user's to fix")
		Eventually(stalled, unreachableConfirmAfter+timeout, interval).Should(Equal(metav1.ConditionTrue), "a confirmed 7003 stalls")
		st := serviceToken(ns, "moved")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		waitFor(st, "waits for its account", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonAccountNotReady))
		Expect(tokenIDs(tokenName(st))).To(BeEmpty())

		// spec.accountID is immutable: the account is made again. A
		// ServiceToken without a token does not hold the account back.
		Expect(k8s.Delete(ctx(), bad)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(bad), bad)) }, timeout, interval).Should(BeTrue())
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		st = waitReady(st)
		Expect(st.Status.AccountID).To(Equal(testAccountID))
		Expect(tokenIDs(tokenName(st))).To(ConsistOf(st.Status.TokenID))
	})
})

// Cloudflare documents every field of a token as optional. With answers that
// carry none of them, the operator still creates, keeps and renews a token
// without a write loop: it keeps what it knows and never "corrects" a field
// it cannot see.
var _ = Describe("Answers without optional fields", func() {
	It("create, observe and renew at no extra calls", func() {
		ns := newNamespace(nil)
		op := startOperator(ns, Options{})
		DeferCleanup(func() { op.stop() })
		op.hooks.mu.Lock()
		op.hooks.lean = true
		op.hooks.mu.Unlock()
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())

		st := serviceToken(ns, "lean", func(st *v1alpha1.ServiceToken) {
			st.Spec.Duration = "30h"
			st.Spec.Renewal = &v1alpha1.Renewal{Before: "10h"}
		})
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		Expect(st.Status.ExpiresAt).NotTo(BeNil(), "the expiry comes from the spec when the answer has none")
		Expect(st.Status.ExpiresAt.Time).To(BeTemporally("~", clk.Now().Add(30*time.Hour), time.Minute))
		id := st.Status.TokenID

		poke(st) // observe again through a lean list: nothing to correct
		st = waitFor(st, "observed again", func(st *v1alpha1.ServiceToken) bool { return isReady(st) })
		Consistently(func() int { return callsOn("update", id) }, 2*time.Second, interval).Should(BeZero(), "no PUT for fields it cannot see")

		clk.Step(st.Status.RenewalTime.Sub(clk.Now()) + time.Second)
		poke(st)
		st = waitFor(st, "renewed", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastRefreshTime != nil
		})
		Expect(st.Status.ExpiresAt.Time).To(BeTemporally("~", clk.Now().Add(30*time.Hour), time.Minute),
			"a PUT of the duration resets the expiry to now + duration, as documented")
		Expect(callsOn("update", id)).To(Equal(1))
		Expect(credentialOf(st).works()).To(BeTrue())
	})
})
