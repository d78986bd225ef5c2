package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// Access policies name a service token by its ID: the ID changes only when
// it must, and every change is announced (docs/access-policies.md).
var _ = Describe("A token's ID", func() {
	var (
		ns string
		op *operator
	)
	withOperator(&ns, &op, Options{DriftCheckPeriod: 500 * time.Millisecond})

	idChanges := func(st *v1alpha1.ServiceToken) []string {
		return op.events.notes(st, "Warning", v1alpha1.ReasonTokenIDChanged)
	}

	It("stays when a list misses a live token: a GET confirms it, also after a GET that could not route (7003), and nothing is recreated", func() {
		st := serviceToken(ns, "missed")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		id, cred := st.Status.TokenID, credentialOf(st)
		gets := callsOn("get", id)

		op.hooks.mu.Lock()
		op.hooks.hideFromLists = id // every drift check now misses it
		op.hooks.getErr = &cf.Error{Kind: cf.KindUnreachable, Op: "get", HTTPStatus: 404, Codes: []int{7003},
			Message: "Could not route to /accounts/x/access/service_tokens/y (injected by test)"}
		op.hooks.mu.Unlock()
		st = waitFor(st, "stopped at the unreachable GET", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonAccountUnreachable))
		Expect(st.Status.TokenID).To(Equal(id))
		Expect(tokenIDs(tokenName(st))).To(ConsistOf(id), "a 7003 says nothing about the token: nothing created")

		op.hooks.mu.Lock()
		op.hooks.getErr = nil
		op.hooks.mu.Unlock()
		poke(st)
		Eventually(func() int { return callsOn("get", id) }, timeout, interval).Should(BeNumerically(">", gets))
		st = waitReady(st)
		Consistently(func() []string { return tokenIDs(tokenName(st)) }, 2*time.Second, interval).Should(ConsistOf(id),
			"drift checks keep missing it; each GET finds it")
		st = get(st)
		Expect(st.Status.TokenID).To(Equal(id))
		Expect(credentialOf(st)).To(Equal(cred))
		Expect(cred.works()).To(BeTrue())
		Expect(op.events.reasons(st)).NotTo(ContainElements("TokenMissing", v1alpha1.ReasonTokenIDChanged))
		Expect(op.counters.tokenIDChanges()).To(BeZero())
	})

	It("changes when a zone token is replaced to rotate it, and never when an account token is rotated or refreshed", func() {
		account := serviceToken(ns, "account-token")
		zone := serviceToken(ns, "zone-token", func(st *v1alpha1.ServiceToken) { st.Spec.ZoneID = testZoneID })
		Expect(k8s.Create(ctx(), account)).To(Succeed())
		Expect(k8s.Create(ctx(), zone)).To(Succeed())
		account, zone = waitReady(account), waitReady(zone)
		accountID, zoneID := account.Status.TokenID, zone.Status.TokenID

		for _, st := range []*v1alpha1.ServiceToken{account, zone} {
			annotate(st, v1alpha1.AnnotationRotateRequestedAt, "id1")
			annotate(st, v1alpha1.AnnotationRefreshRequestedAt, "id1")
		}
		handled := func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRotateRequest == "id1" && st.Status.LastHandledRefreshRequest == "id1"
		}
		account, zone = waitFor(account, "rotated and refreshed", handled), waitFor(zone, "replaced and refreshed", handled)

		Expect(account.Status.TokenID).To(Equal(accountID))
		Expect(idChanges(account)).To(BeEmpty())
		Expect(zone.Status.TokenID).NotTo(Equal(zoneID))
		Eventually(func() []string { return idChanges(zone) }, timeout, interval).Should(HaveLen(1))
		Expect(idChanges(zone)[0]).To(ContainSubstring("from " + zoneID + " to " + zone.Status.TokenID))
		Expect(idChanges(zone)[0]).To(ContainSubstring("zone token was replaced"))
		Expect(op.counters.tokenIDChanges()).To(Equal(1))
	})
})
