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

// foreignToken creates a token in the test account as another owner would
// (another cluster, Terraform, a person in the dashboard): straight through
// the API, unknown to the operator. It returns the token's ID and credential.
func foreignToken(name string) (string, credential) {
	GinkgoHelper()
	c, err := cf.NewFactory(cf.FactoryOptions{}).ClientFor(cf.AccountConfig{Key: "foreign", BaseURL: simURL, APIToken: testAPIToken})
	Expect(err).NotTo(HaveOccurred())
	creds, err := c.Create(ctx(), cf.Scope{AccountID: testAccountID}, cf.TokenSpec{Name: name, Duration: "8760h", Enabled: true})
	Expect(err).NotTo(HaveOccurred())
	return creds.ID, credential{creds.ClientID, creds.ClientSecret}
}

// expectUntouched checks that the operator never wrote to the foreign token:
// no update, rotate, refresh or delete on its ID, and its secret still works.
func expectUntouched(id string, cred credential) {
	GinkgoHelper()
	for _, op := range []string{sim.OpUpdate, sim.OpRotate, sim.OpRefresh, sim.OpDelete} {
		Expect(callsOn(op, id)).To(BeZero(), "%s of the foreign token %s", op, id)
	}
	_, exists := simToken(id)
	Expect(exists).To(BeTrue(), "the foreign token still exists")
	Expect(cred.works()).To(BeTrue(), "the foreign token's secret still works")
}

func deleteAndWait(st *v1alpha1.ServiceToken) {
	GinkgoHelper()
	Expect(k8s.Delete(ctx(), st)).To(Succeed())
	Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(st), &v1alpha1.ServiceToken{}))
	},
		timeout, interval).Should(BeTrue(), "the deletion completes")
}

var _ = Describe("Token identity and ownership", func() {
	var (
		ns string
		op *operator
	)
	withOperator(&ns, &op, Options{})

	It("names a token <namespace>/<name>#<uid>, and <namespace>/<name>@<cluster>#<uid> with --cluster-name", func() {
		plain := serviceToken(ns, "plain")
		Expect(k8s.Create(ctx(), plain)).To(Succeed())
		plain = waitReady(plain)
		Expect(plain.Status.TokenName).To(Equal(ns + "/plain#" + string(plain.UID)))
		Expect(tokenIDs(plain.Status.TokenName)).To(ConsistOf(plain.Status.TokenID))

		op.stop()
		op = startOperator(ns, Options{ClusterName: "eu-west-1"})
		named := serviceToken(ns, "named")
		Expect(k8s.Create(ctx(), named)).To(Succeed())
		named = waitReady(named)
		Expect(named.Status.TokenName).To(Equal(ns + "/named@eu-west-1#" + string(named.UID)))
		Expect(tokenIDs(named.Status.TokenName)).To(ConsistOf(named.Status.TokenID))
		Expect(credentialOf(named).works()).To(BeTrue())
		// The object made before the flag was set gets the cluster into its name
		// too, renamed in place.
		id := plain.Status.TokenID
		plain = waitFor(plain, "renamed with the cluster name", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.TokenName == ns+"/plain@eu-west-1#"+string(st.UID)
		})
		Expect(plain.Status.TokenID).To(Equal(id))
		Expect(tokenIDs(plain.Status.TokenName)).To(ConsistOf(id))
	})

	It("renames a token with the old default name <namespace>/<name> in place, keeping its secret and its expiry", func() {
		op.stop()
		op = startOperator(ns, Options{DriftCheckPeriod: 500 * time.Millisecond})
		st := serviceToken(ns, "legacy")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		id, cred := st.Status.TokenID, credentialOf(st)
		before, _ := simToken(id)
		updates := callsOn(sim.OpUpdate, id)
		// As a token made by an earlier release was named; its credential is in the Secret.
		Expect(simulator.UpdateTokenOutOfBand(id, func(t *sim.TokenState) { t.Name = ns + "/legacy" })).To(BeTrue())
		Eventually(func() string { t, _ := simToken(id); return t.Name }, timeout, interval).Should(Equal(tokenName(st)))
		after, _ := simToken(id)
		Expect(after.ExpiresAt).To(BeTemporally("==", before.ExpiresAt), "a rename does not touch the expiry")
		Expect(callsOn(sim.OpUpdate, id)).To(Equal(updates+1), "one PUT of the name")
		Expect(callsOn(sim.OpRotate, id)).To(BeZero())
		Expect(credentialOf(get(st))).To(Equal(cred))
		Expect(cred.works()).To(BeTrue())
	})

	It("creates a token under its marked name and renames it to spec.tokenName once the secret is stored", func() {
		name := "payments api " + ns
		st := serviceToken(ns, "explicit", func(st *v1alpha1.ServiceToken) { st.Spec.TokenName = name })
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		Expect(st.Status.TokenName).To(Equal(name))
		Expect(tokenIDs(name)).To(ConsistOf(st.Status.TokenID))
		Expect(callsOn(sim.OpUpdate, st.Status.TokenID)).To(Equal(1), "one rename, nothing else")
		Expect(credentialOf(st).works()).To(BeTrue())
	})

	It("deletes a replaced zone token with an explicit tokenName after its grace period, proven by the proof kept for it", func() {
		name := "zone api " + ns
		st := serviceToken(ns, "zone-named", func(st *v1alpha1.ServiceToken) {
			st.Spec.ZoneID, st.Spec.TokenName = testZoneID, name
			st.Spec.Rotation = &v1alpha1.Rotation{GracePeriod: "1h"}
		})
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		first, firstID := credentialOf(st), st.Status.TokenID
		Expect(tokenIDs(name)).To(ConsistOf(firstID))
		updates := callsOn(sim.OpUpdate, firstID)

		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "replace")
		st = waitFor(st, "replaced and renamed", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRotateRequest == "replace" && st.Status.TokenName == name
		})
		Expect(st.Status.PreviousTokenID).To(Equal(firstID))
		Expect(st.Status.PreviousOwnershipProof).NotTo(BeEmpty())
		Expect(tokenIDs(name)).To(ConsistOf(st.Status.TokenID, firstID), "the replaced token keeps its name")
		Expect(callsOn(sim.OpUpdate, firstID)).To(Equal(updates), "no PUT marks the replaced token")
		Expect(first.works()).To(BeTrue(), "the replaced token works during the grace period")

		clk.Step(time.Hour + graceSlack + 2*time.Second)
		poke(st)
		st = waitFor(st, "replaced token deleted", func(st *v1alpha1.ServiceToken) bool { return st.Status.PreviousTokenID == "" && isReady(st) })
		_, exists := simToken(firstID)
		Expect(exists).To(BeFalse())
		Expect(credentialOf(st).works()).To(BeTrue())
		Expect(op.events.reasons(st)).NotTo(ContainElement(v1alpha1.ReasonTokenNotOwned))
	})

	It("leaves a foreign token that already has the ServiceToken's tokenName alone: TokenNameConflict, nothing created, renamed, rotated or deleted", func() {
		name := "shared name " + ns
		foreignID, foreignCred := foreignToken(name)
		st := serviceToken(ns, "conflict", func(st *v1alpha1.ServiceToken) { st.Spec.TokenName = name })
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitFor(st, "TokenNameConflict", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonTokenNameConflict))
		ready := condition(st, v1alpha1.ConditionReady)
		Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		Expect(ready.Message).To(And(ContainSubstring(name), ContainSubstring(foreignID), ContainSubstring("spec.tokenName")))
		Expect(condition(st, v1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		Expect(st.Status.TokenID).To(BeEmpty())
		Expect(tokenIDs(name)).To(ConsistOf(foreignID))
		Expect(tokenIDs(v1alpha1.MarkedTokenName(name, st.UID))).To(BeEmpty(), "nothing was created")
		Eventually(func() []string { return op.events.reasons(st) }, timeout, interval).Should(ContainElement(v1alpha1.ReasonTokenNameConflict),
			"a Warning event names the reason")
		expectUntouched(foreignID, foreignCred)

		deleteAndWait(st)
		expectUntouched(foreignID, foreignCred)
	})

	It("keeps its token, working, under its current name when spec.tokenName is changed to a name a foreign token has", func() {
		op.stop()
		op = startOperator(ns, Options{DriftCheckPeriod: 300 * time.Millisecond})
		st := serviceToken(ns, "rename")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		id, cred := st.Status.TokenID, credentialOf(st)
		name := "taken " + ns
		foreignID, foreignCred := foreignToken(name)
		// The check reads the account's token list (at most a drift period
		// old): let a list that started after the foreign create finish.
		lists := callsOn(sim.OpList, testAccountID)
		Eventually(func() int { return callsOn(sim.OpList, testAccountID) }, timeout, interval).Should(BeNumerically(">=", lists+2))
		update(st, func(st *v1alpha1.ServiceToken) { st.Spec.TokenName = name })
		st = waitFor(st, "TokenNameConflict", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonTokenNameConflict))
		Expect(condition(st, v1alpha1.ConditionReady).Message).To(ContainSubstring(id))
		tok, _ := simToken(id)
		Expect(tok.Name).To(Equal(tokenName(st)), "not renamed")
		Expect(st.Status.TokenID).To(Equal(id))
		Expect(cred.works()).To(BeTrue(), "its credential keeps working")
		expectUntouched(foreignID, foreignCred)
	})

	It("recovers a lost create by its marked name only: a same-named foreign token is neither adopted nor touched, and survives the deletion", func() {
		name := "lost " + ns
		type made struct {
			id   string
			cred credential
		}
		foreign := make(chan made, 1)
		// Another cluster creates a token with the same name while our create's
		// response is lost: by name and creation time the two look alike.
		op.hooks.afterCreate = func() error {
			defer GinkgoRecover()
			id, cred := foreignToken(name)
			foreign <- made{id, cred}
			return lostResponse()
		}
		st := serviceToken(ns, "lost", func(st *v1alpha1.ServiceToken) { st.Spec.TokenName = name })
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		marked := v1alpha1.MarkedTokenName(name, st.UID)
		st = waitFor(st, "recovered, then TokenNameConflict for the rename", func(st *v1alpha1.ServiceToken) bool {
			return hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonTokenNameConflict)(st) && st.Status.TokenID != "" &&
				st.Status.PendingOperation == nil
		})
		var f made
		Eventually(foreign).Should(Receive(&f))
		foreignID, foreignCred := f.id, f.cred
		ours := tokenIDs(marked)
		Expect(ours).To(ConsistOf(st.Status.TokenID), "the operator adopted its own token, under its marked name")
		Expect(st.Status.TokenID).NotTo(Equal(foreignID))
		Expect(tokenIDs(name)).To(ConsistOf(foreignID))
		Expect(credentialOf(st).works()).To(BeTrue(), "the recovery issued a secret for our token")
		Expect(op.events.reasons(st)).To(ContainElement("SecretLost"))
		expectUntouched(foreignID, foreignCred)

		deleteAndWait(st)
		_, exists := simToken(ours[0])
		Expect(exists).To(BeFalse(), "our token is deleted with the ServiceToken")
		expectUntouched(foreignID, foreignCred)
	})

	It("still knows a token under an explicit tokenName as its own after the Secret is deleted: the proof in status, made with the credentials", func() {
		st := serviceToken(ns, "proven", func(st *v1alpha1.ServiceToken) { st.Spec.TokenName = "proven " + ns })
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		id := st.Status.TokenID
		Expect(st.Status.OwnershipProof).NotTo(BeEmpty())
		Expect(st.Status.OwnershipProof).NotTo(ContainSubstring(testAPIToken))
		Expect(k8s.Delete(ctx(), secretOf(st))).To(Succeed())
		st = waitFor(st, "a new secret in a new Secret", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastRotationTime != nil && callsOn(sim.OpRotate, id) == 1
		})
		Expect(st.Status.TokenID).To(Equal(id), "the same token, rotated")
		Eventually(func() bool { return credentialOf(st).works() }, timeout, interval).Should(BeTrue())
		Expect(op.events.reasons(st)).NotTo(ContainElement(v1alpha1.ReasonTokenNotOwned))

		// With the operator down, the Secret and then the ServiceToken are
		// deleted: only the proof is left to show the token is this object's.
		op.stop()
		Expect(k8s.Delete(ctx(), secretOf(st))).To(Succeed())
		Expect(k8s.Delete(ctx(), st)).To(Succeed())
		op = startOperator(ns, Options{})
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(st), &v1alpha1.ServiceToken{}))
		}, timeout, interval).Should(BeTrue())
		_, exists := simToken(id)
		Expect(exists).To(BeFalse(), "deleted with the ServiceToken: the proof is enough")
	})

	It("keeps proving a token renamed to spec.tokenName when the reconcile fails after the rename and the Secret is then lost", func() {
		name := "renamed " + ns
		st := serviceToken(ns, "renamed", func(st *v1alpha1.ServiceToken) { st.Spec.TokenName = name })
		// The rename off the marked name is applied but its answer lost, and
		// the Secret is deleted before the next reconcile: neither the name
		// nor the Secret shows the token is this object's any more.
		renamed := make(chan struct{})
		op.hooks.afterUpdate = func() error {
			defer GinkgoRecover()
			Expect(k8s.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: st.Name}})).To(Succeed())
			close(renamed)
			return lostResponse()
		}
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		Eventually(renamed, timeout).Should(BeClosed())
		// A new leader: nothing of the first one's memory (its list still
		// shows the marked name).
		op.stop()
		op = startOperator(ns, Options{})
		st = waitFor(st, "Ready, its lost secret replaced", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.TokenID != "" && callsOn(sim.OpRotate, st.Status.TokenID) == 1
		})
		id := st.Status.TokenID
		Expect(tokenIDs(name)).To(ConsistOf(id), "the token kept its ID and has the new name")
		Expect(op.events.reasons(st)).NotTo(ContainElement(v1alpha1.ReasonTokenNotOwned))
		Eventually(func() bool { return credentialOf(st).works() }, timeout, interval).Should(BeTrue())

		deleteAndWait(st)
		_, exists := simToken(id)
		Expect(exists).To(BeFalse(), "deleted with the ServiceToken, not left in Cloudflare")
	})

	It("does not rotate, renew, update or delete a foreign token that status.tokenID is pointed at", func() {
		st := serviceToken(ns, "pointed")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		foreignID, foreignCred := foreignToken("another tenant " + ns)
		// Someone who may write servicetokens/status, not Cloudflare.
		cur := get(st)
		Expect(cur.Status.OwnershipProof).NotTo(BeEmpty(), "the proof of its own token stays: it does not prove another")
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Status.TokenID, cur.Status.ClientID = foreignID, foreignCred.id
		Expect(k8s.Status().Patch(ctx(), cur, patch)).To(Succeed())
		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "steal")
		annotate(st, v1alpha1.AnnotationRefreshRequestedAt, "steal")
		st = waitFor(st, "TokenNotOwned", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonTokenNotOwned))
		Expect(condition(st, v1alpha1.ConditionReady).Message).To(ContainSubstring(foreignID))
		Eventually(func() []string { return op.events.reasons(st) }, timeout, interval).Should(ContainElement(v1alpha1.ReasonTokenNotOwned),
			"a Warning event names the reason")
		expectUntouched(foreignID, foreignCred)

		deleteAndWait(st)
		expectUntouched(foreignID, foreignCred)
		var warned bool
		for _, e := range op.events.all() {
			if e.Object == ns+"/pointed" && e.Reason == v1alpha1.ReasonTokenNotOwned && e.Type == corev1.EventTypeWarning && containsText(e.Note, "left in Cloudflare") {
				warned = true
			}
		}
		Expect(warned).To(BeTrue(), "the deletion says which token it left and why")
		expectNoSecretLeaks(op)
	})
})
