package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

var _ = Describe("Changes made outside the operator", func() {
	const drift = 2 * time.Second
	var (
		ns string
		op *operator
	)
	withOperator(&ns, &op, Options{DriftCheckPeriod: drift})

	It("heals a rotation made in the dashboard within two drift periods: the Secret works again, same token", func() {
		st := serviceToken(ns, "rotated-upstream")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		held := credentialOf(st)
		clk.Step(time.Minute) // Cloudflare's clock moves on: so does the token's updated_at
		Expect(simulator.RotateTokenOutOfBand(st.Status.TokenID)).To(BeTrue())
		Expect(held.works()).To(BeFalse(), "the dashboard's rotation revoked the secret workloads hold")

		// Two drift periods, plus a second for the reconcile and the Secret write.
		Eventually(func() bool { return credentialOf(st).works() }, 2*drift+time.Second, 50*time.Millisecond).Should(BeTrue(),
			"the Secret holds a working secret again within two drift periods")
		st = waitFor(st, "the change recorded", func(st *v1alpha1.ServiceToken) bool { return st.Status.LastExternalChange != nil })
		Expect(st.Status.LastExternalChange.Kind).To(Equal(v1alpha1.ExternalRotated))
		Expect(st.Status.LastExternalChange.Message).To(ContainSubstring("may have been rotated"))
		Eventually(func() []string { return op.events.notes(st, "Warning", v1alpha1.ReasonChangedOutsideOperator) }, timeout, interval).
			Should(ContainElement(ContainSubstring("may have been rotated")))
		Expect(tokenIDs(tokenName(st))).To(ConsistOf(st.Status.TokenID), "the same token, rotated: Access policies still match")
		Expect(callsOn(sim.OpRotate, st.Status.TokenID)).To(Equal(1), "one rotation heals it")
		expectNoSecretLeaks(op, st)
	})

	It("corrects a rename or a disabled token without rotating, and says so in status", func() {
		st := serviceToken(ns, "edited-upstream")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		held := credentialOf(st)
		clk.Step(time.Minute)
		Expect(simulator.UpdateTokenOutOfBand(st.Status.TokenID, func(t *sim.TokenState) { t.Enabled = false })).To(BeTrue())
		st = waitFor(st, "the change recorded", func(st *v1alpha1.ServiceToken) bool {
			return st.Status.LastExternalChange != nil && st.Status.LastExternalChange.Kind == v1alpha1.ExternalDisabled
		})
		Expect(st.Status.LastExternalChange.Message).To(ContainSubstring("spec.enabled"))
		Eventually(func() bool { t, _ := simToken(st.Status.TokenID); return t.Enabled }, timeout, interval).Should(BeTrue())

		clk.Step(time.Minute)
		Expect(simulator.UpdateTokenOutOfBand(st.Status.TokenID, func(t *sim.TokenState) { t.Name = "someone-else" })).To(BeTrue())
		st = waitFor(st, "the rename recorded", func(st *v1alpha1.ServiceToken) bool {
			return st.Status.LastExternalChange.Kind == v1alpha1.ExternalModified
		})
		Expect(st.Status.LastExternalChange.Message).To(ContainSubstring(`renamed to "someone-else"`))
		Eventually(func() string { t, _ := simToken(st.Status.TokenID); return t.Name }, timeout, interval).Should(Equal(tokenName(st)))
		Expect(held.works()).To(BeTrue())
		Expect(callsOn(sim.OpRotate, st.Status.TokenID)).To(BeZero(), "a visible edit is no sign of a rotation")
	})

	It("says a token was deleted outside the operator when it makes a new one", func() {
		st := serviceToken(ns, "deleted-upstream")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		old := st.Status.TokenID
		Expect(simulator.DeleteTokenOutOfBand(old)).To(BeTrue())
		st = waitFor(st, "recreated", func(st *v1alpha1.ServiceToken) bool { return isReady(st) && st.Status.TokenID != old })
		Expect(st.Status.LastExternalChange).NotTo(BeNil())
		Expect(st.Status.LastExternalChange.Kind).To(Equal(v1alpha1.ExternalDeleted))
		Expect(st.Status.LastExternalChange.Message).To(And(ContainSubstring(old), ContainSubstring("inactive tokens")))
	})
})

var _ = Describe("Adoption and Orphan", func() {
	var (
		ns string
		op *operator
	)
	withOperator(&ns, &op, Options{})

	adopting := func(name, id string) *v1alpha1.ServiceToken {
		return serviceToken(ns, name, func(st *v1alpha1.ServiceToken) {
			st.Annotations = map[string]string{v1alpha1.AnnotationAdoptTokenID: id}
		})
	}

	It("adopts a token made elsewhere: rotated with the grace period, renamed, owned from then on", func() {
		id, terraform := foreignToken("made-by-terraform")
		st := adopting("adopter", id)
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		Expect(st.Status.TokenID).To(Equal(id))
		Expect(st.Status.AdoptedTokenID).To(Equal(id))
		Expect(credentialOf(st).works()).To(BeTrue(), "the Secret holds a secret of the adopted token")
		Expect(terraform.works()).To(BeTrue(), "the old secret keeps working through the grace period")
		Expect(st.Status.PreviousSecretExpiresAt).NotTo(BeNil())
		Expect(tokenIDs(tokenName(st))).To(ConsistOf(id), "renamed to the object's (marked) name")
		Expect(op.events.reasons(st)).To(ContainElement("Adopted"))
		Expect(tokenIDs(ns+"/adopter")).To(BeEmpty(), "no token was created")
		expectNoSecretLeaks(op, st)

		// Acted on once: the annotation may stay.
		Consistently(func() int { return callsOn(sim.OpRotate, id) }, 2*time.Second, 200*time.Millisecond).Should(Equal(1))
	})

	It("finishes an adoption under an explicit tokenName whose first rotation failed: the proof recorded at adoption carries it", func() {
		id, terraform := foreignToken("made-by-terraform " + ns)
		failures := 1
		op.hooks.mu.Lock()
		op.hooks.beforeRotate = func() error {
			if failures == 0 {
				return nil
			}
			failures--
			return &cf.Error{Kind: cf.KindTransient, Op: "rotate", Message: "injected by test"}
		}
		op.hooks.mu.Unlock()
		st := adopting("adopter-named", id)
		st.Spec.TokenName = "adopted " + ns
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		Expect(st.Status.TokenID).To(Equal(id))
		Expect(op.events.reasons(st)).NotTo(ContainElement(v1alpha1.ReasonTokenNotOwned))
		Expect(callsOn(sim.OpRotate, id)).To(Equal(1), "the failed attempt never reached Cloudflare")
		Expect(credentialOf(st).works()).To(BeTrue())
		Expect(terraform.works()).To(BeTrue(), "the old secret keeps its grace period")
	})

	It("refuses a token that does not exist in the account, or that another ServiceToken made, and creates nothing", func() {
		missing := adopting("missing", "00000000-0000-4000-8000-000000000000")
		Expect(k8s.Create(ctx(), missing)).To(Succeed())
		missing = waitFor(missing, "refused", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonAdoptionFailed))
		Expect(condition(missing, v1alpha1.ConditionReady).Message).To(ContainSubstring("no such token"))
		Expect(missing.Status.TokenID).To(BeEmpty())

		other := serviceToken(ns, "other")
		Expect(k8s.Create(ctx(), other)).To(Succeed())
		other = waitReady(other)
		held := credentialOf(other)
		thief := adopting("thief", other.Status.TokenID)
		Expect(k8s.Create(ctx(), thief)).To(Succeed())
		thief = waitFor(thief, "refused", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonAdoptionFailed))
		Expect(condition(thief, v1alpha1.ConditionReady).Message).To(ContainSubstring("made by another ServiceToken"))
		Expect(callsOn(sim.OpRotate, other.Status.TokenID)).To(BeZero())
		Expect(held.works()).To(BeTrue())
		Expect(simTokens(tokenName(thief))).To(BeEmpty(), "nothing was created for the refused adoption")
	})

	It("keeps the Secret and releases the token's marker with deletionPolicy Orphan, so another ServiceToken can adopt it", func() {
		st := serviceToken(ns, "leaving", func(st *v1alpha1.ServiceToken) { st.Spec.DeletionPolicy = v1alpha1.DeletionOrphan })
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		held := credentialOf(st)
		id := st.Status.TokenID
		deleteAndWait(st)

		// The garbage collector runs in this control plane: an ownerReference
		// left behind would take the Secret.
		Consistently(func() error {
			return k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: st.Status.SecretName}, &corev1.Secret{})
		}, 3*time.Second, 250*time.Millisecond).Should(Succeed(), "the Secret is kept")
		kept := secretOf(st)
		Expect(metav1.GetControllerOf(kept)).To(BeNil())
		Expect(kept.Labels).NotTo(HaveKey(v1alpha1.LabelManaged))
		Expect(held.works()).To(BeTrue())
		t, exists := simToken(id)
		Expect(exists).To(BeTrue())
		Expect(t.Name).To(Equal(ns+"/leaving"), "the marker of the deleted object is removed")

		heir := adopting("heir", id)
		Expect(k8s.Create(ctx(), heir)).To(Succeed())
		heir = waitReady(heir)
		Expect(heir.Status.TokenID).To(Equal(id))
		Expect(held.works()).To(BeTrue(), "the kept secret works through the heir's grace period")
		Expect(apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(st), &v1alpha1.ServiceToken{}))).To(BeTrue())
	})
})
