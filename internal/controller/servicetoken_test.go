package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

var _ = Describe("A ServiceToken", func() {
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

	It("sends no status patch when a reconcile changes nothing", func() {
		// Cloudflare's timestamps may carry a fraction of a second; the API
		// server keeps whole seconds of a status time.
		clk.Step(250 * time.Millisecond)
		DeferCleanup(func() { clk.Step(750 * time.Millisecond) })
		st := serviceToken(ns, "quiet")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		key := client.ObjectKeyFromObject(st)
		// Let the reconciles that follow becoming Ready finish.
		Eventually(func() int { return op.calls.get(op.calls.patches, key) }, timeout, interval).Should(BeNumerically(">", 0))
		time.Sleep(500 * time.Millisecond)
		gets, patches := op.calls.get(op.calls.gets, key), op.calls.get(op.calls.patches, key)

		poke(st) // a metadata change: the controller looks again, nothing is due
		Eventually(func() int { return op.calls.get(op.calls.gets, key) }, timeout, interval).Should(BeNumerically(">", gets))
		Consistently(func() int { return op.calls.get(op.calls.patches, key) }, time.Second, interval).Should(Equal(patches),
			"status times are stored in whole seconds: a computed time with a fraction would look changed on every reconcile")
	})

	It("becomes a Cloudflare token and an owned Secret holding a working credential", func() {
		st := serviceToken(ns, "api", func(st *v1alpha1.ServiceToken) {
			st.Spec.Secret = &v1alpha1.SecretTemplate{Name: "api-creds",
				Keys:        &v1alpha1.SecretKeys{ClientID: "CF_ACCESS_CLIENT_ID", ClientSecret: "CF_ACCESS_CLIENT_SECRET"},
				Labels:      map[string]string{"team": "payments"},
				Annotations: map[string]string{"reloader.stakater.com/match": "true"}}
		})
		st.Labels = map[string]string{"argocd.argoproj.io/instance": "payments"}
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)

		Expect(tokenIDs(tokenName(st))).To(HaveLen(1))
		tokens := simTokens(tokenName(st))
		Expect(tokens[0].Duration).To(Equal("720h"))
		Expect(st.Status.TokenID).To(Equal(tokens[0].ID))
		Expect(st.Status.ClientID).To(Equal(tokens[0].ClientID))
		Expect(st.Status.TokenName).To(Equal(tokenName(st)))
		Expect(st.Status.TokenName).To(HaveSuffix("#"+string(st.UID)), "the default name carries the object's UID")
		Expect(st.Status.SecretName).To(Equal("api-creds"))
		Expect(st.Status.ExpiresAt.Time).To(BeTemporally("==", tokens[0].ExpiresAt))
		Expect(st.Status.RenewalTime.Time).To(BeTemporally("==", tokens[0].ExpiresAt.Add(-240*time.Hour).Truncate(time.Second)),
			"renewal.before (a third of the duration) ahead of expiry: nothing else in the account competes for its slot")

		secret := secretOf(st)
		Expect(metav1.IsControlledBy(secret, st)).To(BeTrue())
		Expect(secret.Labels).To(HaveKeyWithValue(v1alpha1.LabelManaged, "true"))
		Expect(secret.Labels).To(HaveKeyWithValue("team", "payments"))
		Expect(secret.Labels).NotTo(HaveKey("argocd.argoproj.io/instance"), "the ServiceToken's own labels are never copied")
		Expect(secret.Annotations).To(HaveKeyWithValue("reloader.stakater.com/match", "true"))
		Expect(secret.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationTokenID, tokens[0].ID))
		Expect(secret.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationExpiresAt, tokens[0].ExpiresAt.UTC().Format(time.RFC3339)))
		Expect(string(secret.Data["CF_ACCESS_CLIENT_SECRET"])).To(Equal(tokens[0].ClientSecret))
		Expect(credentialOf(st).works()).To(BeTrue())

		Expect(kstatus(st)).To(Equal(status.CurrentStatus))
		Expect(op.events.reasons(st)).To(ContainElement("Created"))
		expectNoSecretLeaks(op, st)
	})

	It("updates name, duration and enabled in place, keeping the secret", func() {
		st := serviceToken(ns, "inplace")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		cred, id := credentialOf(st), st.Status.TokenID

		update(st, func(st *v1alpha1.ServiceToken) {
			st.Spec.TokenName, st.Spec.Duration = "renamed-by-spec", "48h"
		})
		st = waitFor(st, "renamed", func(st *v1alpha1.ServiceToken) bool { return isReady(st) && st.Status.TokenName == "renamed-by-spec" })
		tok, ok := simToken(id)
		Expect(ok).To(BeTrue())
		Expect(tok.Name).To(Equal("renamed-by-spec"))
		Expect(tok.Duration).To(Equal("48h"))
		Expect(tok.ExpiresAt).To(BeTemporally("==", clk.Now().Add(48*time.Hour)), "a new duration resets expiry")
		Expect(st.Status.TokenID).To(Equal(id))
		Expect(credentialOf(st)).To(Equal(cred))
		Expect(cred.works()).To(BeTrue())

		update(st, func(st *v1alpha1.ServiceToken) { st.Spec.Enabled = ptr(false) })
		Eventually(func() bool { t, _ := simToken(id); return t.Enabled }, timeout, interval).Should(BeFalse())
		Expect(cred.works()).To(BeFalse(), "a disabled token does not authenticate")
		waitReady(st)

		update(st, func(st *v1alpha1.ServiceToken) { st.Spec.Enabled = nil })
		Eventually(cred.works, timeout, interval).Should(BeTrue())
		Expect(tokenIDs("renamed-by-spec")).To(HaveLen(1))
		Expect(op.events.reasons(st)).To(ContainElement("Updated"))
	})

	It("refreshes as expiry gets close, keeping the same secret", func() {
		st := serviceToken(ns, "refresh", func(st *v1alpha1.ServiceToken) {
			st.Spec.Duration = "30h"
			st.Spec.Renewal = &v1alpha1.Renewal{Before: "10h"}
		})
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		cred, expires := credentialOf(st), st.Status.ExpiresAt.Time

		clk.Step(st.Status.RenewalTime.Sub(clk.Now()) + time.Second)
		poke(st)
		st = waitFor(st, "refreshed", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.ExpiresAt.After(expires)
		})
		Expect(st.Status.LastRefreshTime).NotTo(BeNil())
		Expect(credentialOf(st)).To(Equal(cred), "refresh keeps the secret")
		Expect(cred.works()).To(BeTrue())
		Expect(st.Status.RenewalTime.Time).To(BeTemporally(">", clk.Now()))
		Expect(op.events.reasons(st)).To(ContainElement("Refreshed"))
	})

	It("rotates as expiry gets close with action Rotate, keeping the old secret valid for the grace period", func() {
		st := serviceToken(ns, "rotate", func(st *v1alpha1.ServiceToken) {
			st.Spec.Duration = "30h"
			st.Spec.Renewal = &v1alpha1.Renewal{Before: "10h", Action: v1alpha1.RenewalRotate}
			st.Spec.Rotation = &v1alpha1.Rotation{GracePeriod: "1h"}
		})
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		old, expires := credentialOf(st), st.Status.ExpiresAt.Time

		clk.Step(st.Status.RenewalTime.Sub(clk.Now()) + time.Second)
		poke(st)
		st = waitFor(st, "rotated", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastRotationTime != nil && st.Status.LastRotationTime.Time.Equal(clk.Now().Truncate(time.Second))
		})
		cur := credentialOf(st)
		Expect(cur.secret).NotTo(Equal(old.secret))
		Expect(cur.id).To(Equal(old.id))
		Expect(cur.works()).To(BeTrue())
		Expect(old.works()).To(BeTrue(), "the previous secret works during the grace period")
		Expect(st.Status.ExpiresAt.Time).To(BeTemporally(">", expires), "expiry is extended too (rotate alone does not)")
		Expect(st.Status.PreviousSecretExpiresAt.Time).To(BeTemporally("==", clk.Now().Truncate(time.Second).Add(time.Hour+graceSlack)),
			"the grace counts from when the new secret is stored; graceSlack covers the call and the write")

		clk.Step(time.Hour)
		Expect(old.works()).To(BeTrue(), "the previous secret works for the whole grace period after the new one was stored")
		clk.Step(graceSlack + time.Second)
		Expect(old.works()).To(BeFalse(), "the previous secret stops after the grace period")
		Expect(cur.works()).To(BeTrue())
		Expect(op.events.reasons(st)).To(ContainElement("Rotated"))
		expectNoSecretLeaks(op, st)
	})

	It("rotates on the rotation.every schedule even when expiry is far", func() {
		st := serviceToken(ns, "routine", func(st *v1alpha1.ServiceToken) {
			st.Spec.Rotation = &v1alpha1.Rotation{Every: "24h", GracePeriod: "2h"}
		})
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		old := credentialOf(st)
		Expect(st.Status.RenewalTime.Time).To(BeTemporally("==", st.Status.LastRotationTime.Add(24*time.Hour)))

		clk.Step(24*time.Hour + time.Second)
		poke(st)
		st = waitFor(st, "rotated on schedule", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && credentialOf(st).secret != old.secret
		})
		Expect(old.works()).To(BeTrue())
		Expect(credentialOf(st).works()).To(BeTrue())
		clk.Step(2 * time.Hour)
		Expect(old.works()).To(BeTrue())
		clk.Step(graceSlack + time.Second)
		Expect(old.works()).To(BeFalse())
	})

	It("rotates and refreshes exactly once per request annotation, echoing it in status", func() {
		st := serviceToken(ns, "requests")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		first := credentialOf(st)

		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "2026-11-26T12:00:00Z")
		st = waitFor(st, "rotate handled", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRotateRequest == "2026-11-26T12:00:00Z"
		})
		second := credentialOf(st)
		Expect(second.secret).NotTo(Equal(first.secret))
		Expect(first.works()).To(BeTrue(), "default grace period is 24h")

		poke(st) // the same request value must not rotate again
		Consistently(func() string { return credentialOf(st).secret }, time.Second, interval).Should(Equal(second.secret))

		expires := st.Status.ExpiresAt.Time
		clk.Step(time.Hour)
		annotate(st, v1alpha1.AnnotationRefreshRequestedAt, "r1")
		st = waitFor(st, "refresh handled", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRefreshRequest == "r1"
		})
		Expect(st.Status.ExpiresAt.Time).To(BeTemporally(">", expires))
		Expect(credentialOf(st)).To(Equal(second))
		rotations := 0
		for _, r := range op.events.reasons(st) {
			if r == "Rotated" {
				rotations++
			}
		}
		Expect(rotations).To(Equal(1))
	})

	It("gives Ready=False, reason SecretConflict, and leaves a foreign Secret untouched", func() {
		foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"}, StringData: map[string]string{"password": "keep-me"}}
		Expect(k8s.Create(ctx(), foreign)).To(Succeed())
		st := serviceToken(ns, "conflict", func(st *v1alpha1.ServiceToken) { st.Spec.Secret = &v1alpha1.SecretTemplate{Name: "taken"} })
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitFor(st, "SecretConflict", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonSecretConflict))
		Expect(condition(st, v1alpha1.ConditionStalled).Status).To(Equal(metav1.ConditionTrue))
		Expect(kstatus(st)).To(Equal(status.FailedStatus))

		after := &corev1.Secret{}
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(foreign), after)).To(Succeed())
		Expect(after.Data).To(Equal(map[string][]byte{"password": []byte("keep-me")}))
		Expect(after.OwnerReferences).To(BeEmpty())
		Expect(tokenIDs(tokenName(st))).To(BeEmpty(), "no token is created that could not be stored")
	})

	It("deletes the Secrets it controls under another name, its own default name included", func() {
		st := serviceToken(ns, "leftover", func(st *v1alpha1.ServiceToken) { st.Spec.Secret = &v1alpha1.SecretTemplate{Name: "leftover-creds"} })
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		// What a crash between writing the moved Secret and deleting the old
		// one leaves: old Secrets it controls, under the default name (which
		// the owner index leaves out) and under an earlier spec.secret.name.
		ctrlRef := *metav1.NewControllerRef(st, v1alpha1.GroupVersion.WithKind("ServiceToken"))
		for _, name := range []string{"leftover", "leftover-old"} {
			Expect(k8s.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
				Labels: map[string]string{v1alpha1.LabelManaged: "true"}, OwnerReferences: []metav1.OwnerReference{ctrlRef}},
				StringData: map[string]string{"client_id": "old.access", "client_secret": "old"}})).To(Succeed())
		}
		poke(st)
		for _, name := range []string{"leftover", "leftover-old"} {
			Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{}))
			}, timeout, interval).Should(BeTrue(), "old Secret %s", name)
		}
		Expect(credentialOf(waitReady(st)).works()).To(BeTrue(), "the current Secret stays")
		Expect(secretOf(st).Name).To(Equal("leftover-creds"))
	})

	It("restores a deleted Secret by rotating, since the old secret can't be read back", func() {
		st := serviceToken(ns, "lost-secret")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		old := credentialOf(st)
		Expect(k8s.Delete(ctx(), secretOf(st))).To(Succeed())
		st = waitFor(st, "restored", func(st *v1alpha1.ServiceToken) bool {
			s := &corev1.Secret{}
			err := k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "lost-secret"}, s)
			return err == nil && isReady(st) && string(s.Data["client_secret"]) != old.secret
		})
		Expect(credentialOf(st).works()).To(BeTrue())
		Expect(old.works()).To(BeTrue(), "workloads still holding the old secret keep working for the grace period")
		Expect(tokenIDs(tokenName(st))).To(HaveLen(1))
		Expect(op.events.reasons(st)).To(ContainElement("SecretLost"))
	})

	It("restores a Secret whose keys were edited", func() {
		st := serviceToken(ns, "edited")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		secret := secretOf(st)
		secret.Data["client_secret"] = []byte("garbage")
		Expect(k8s.Update(ctx(), secret)).To(Succeed())
		st = waitFor(st, "restored", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && credentialOf(st).secret != "garbage"
		})
		Expect(credentialOf(st).works()).To(BeTrue())
	})

	It("recreates a token deleted in Cloudflare, found by the account-wide drift check, and announces its new ID", func() {
		op.stop()
		op = startOperator(ns, Options{DriftCheckPeriod: 500 * time.Millisecond})
		st := serviceToken(ns, "deleted-upstream")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		oldID := st.Status.TokenID
		Expect(simulator.DeleteTokenOutOfBand(oldID)).To(BeTrue())
		st = waitFor(st, "recreated", func(st *v1alpha1.ServiceToken) bool { return isReady(st) && st.Status.TokenID != oldID })
		Expect(credentialOf(st).works()).To(BeTrue())
		Expect(tokenIDs(tokenName(st))).To(HaveLen(1))
		Expect(op.events.reasons(st)).To(ContainElement("TokenMissing"))
		Eventually(func() []string { return op.events.notes(st, "Warning", v1alpha1.ReasonTokenIDChanged) }, timeout, interval).Should(
			ConsistOf(And(ContainSubstring("from "+oldID+" to "+st.Status.TokenID), ContainSubstring("no longer exists in Cloudflare"))),
			"Access policies naming the old ID must be told")
		Expect(op.counters.tokenIDChanges()).To(Equal(1))
		expectNoSecretLeaks(op, st)
	})

	It("corrects a token renamed outside the operator", func() {
		op.stop()
		op = startOperator(ns, Options{DriftCheckPeriod: 500 * time.Millisecond})
		st := serviceToken(ns, "renamed-upstream")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		cred := credentialOf(st)
		Expect(simulator.UpdateTokenOutOfBand(st.Status.TokenID, func(t *sim.TokenState) { t.Name = "someone-else" })).To(BeTrue())
		Eventually(func() string { t, _ := simToken(st.Status.TokenID); return t.Name }, timeout, interval).Should(Equal(tokenName(st)))
		Expect(cred.works()).To(BeTrue())
	})

	Describe("deletion", func() {
		It("deletes the Cloudflare token with deletionPolicy Delete", func() {
			st := serviceToken(ns, "del")
			Expect(k8s.Create(ctx(), st)).To(Succeed())
			st = waitReady(st)
			Expect(k8s.Delete(ctx(), st)).To(Succeed())
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(st), st)) }, timeout, interval).Should(BeTrue())
			_, exists := simToken(st.Status.TokenID)
			Expect(exists).To(BeFalse())
		})

		It("leaves the Cloudflare token with deletionPolicy Orphan", func() {
			st := serviceToken(ns, "orphan", func(st *v1alpha1.ServiceToken) { st.Spec.DeletionPolicy = v1alpha1.DeletionOrphan })
			Expect(k8s.Create(ctx(), st)).To(Succeed())
			st = waitReady(st)
			Expect(k8s.Delete(ctx(), st)).To(Succeed())
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(st), st)) }, timeout, interval).Should(BeTrue())
			_, exists := simToken(st.Status.TokenID)
			Expect(exists).To(BeTrue())
		})

		It("deletes its token even when the account and its credentials are deleted with it, as in a namespace deletion", func() {
			st := serviceToken(ns, "ns-gone")
			Expect(k8s.Create(ctx(), st)).To(Succeed())
			st = waitReady(st)
			acc := cfAccount(ns, "cf")
			Expect(k8s.Delete(ctx(), acc)).To(Succeed())
			Expect(k8s.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cloudflare-api"}})).To(Succeed())
			Expect(k8s.Delete(ctx(), st)).To(Succeed())
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(st), st)) }, timeout, interval).Should(BeTrue())
			_, exists := simToken(st.Status.TokenID)
			Expect(exists).To(BeFalse(), "the token is deleted with the last client the account had")
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(acc), acc)) }, timeout, interval).
				Should(BeTrue(), "the account's finalizer is released once no ServiceToken uses it")
		})

		It("can be released with the force-delete annotation when its token cannot be deleted", func() {
			st := serviceToken(ns, "stuck")
			Expect(k8s.Create(ctx(), st)).To(Succeed())
			st = waitReady(st)
			Eventually(func() error { // Cloudflare becomes unreachable for this account
				acc := &v1alpha1.CloudflareAccount{}
				Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "cf"}, acc)).To(Succeed())
				acc.Spec.APIURL = "http://127.0.0.1:1/client/v4"
				return k8s.Update(ctx(), acc)
			}, timeout, interval).Should(Succeed())
			Expect(k8s.Delete(ctx(), st)).To(Succeed())
			st = waitFor(st, "deletion blocked", func(st *v1alpha1.ServiceToken) bool {
				c := condition(st, v1alpha1.ConditionReady)
				return c != nil && c.Reason == v1alpha1.ReasonDeletionBlocked && st.Status.FailedAttempts >= 5 &&
					containsText(c.Message, v1alpha1.AnnotationForceDelete)
			})
			Expect(op.events.reasons(st)).To(ContainElement(v1alpha1.ReasonDeletionBlocked))
			annotate(st, v1alpha1.AnnotationForceDelete, "true")
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(st), st)) }, timeout, interval).Should(BeTrue())
		})
	})
})
