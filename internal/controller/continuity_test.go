package controller

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// callsOn counts the simulator's requests of one operation on one token.
func callsOn(op, tokenID string) int {
	n := 0
	for _, r := range simulator.RequestLog() {
		if r.Op == op && strings.Contains(r.Path, tokenID) {
			n++
		}
	}
	return n
}

func patchSecret(st *v1alpha1.ServiceToken, mutate func(*corev1.Secret)) {
	EventuallyWithOffset(1, func() error {
		s := secretOf(st)
		base := s.DeepCopy()
		mutate(s)
		return k8s.Patch(ctx(), s, client.MergeFrom(base))
	}, timeout, interval).Should(Succeed())
}

// What a workload sees: the secret it holds keeps working through the grace
// period, whatever fails around the rotation that replaces it. Each spec is
// a case in which the previous secret used to be revoked early.
var _ = Describe("Secret continuity", func() {
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

	rotating := func(name string, mutate ...func(*v1alpha1.ServiceToken)) (*v1alpha1.ServiceToken, credential) {
		st := serviceToken(ns, name, append([]func(*v1alpha1.ServiceToken){func(st *v1alpha1.ServiceToken) {
			st.Spec.Rotation = &v1alpha1.Rotation{GracePeriod: "1h"}
		}}, mutate...)...)
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		return st, credentialOf(st)
	}
	requestRotation := func(st *v1alpha1.ServiceToken, value string) *v1alpha1.ServiceToken {
		annotate(st, v1alpha1.AnnotationRotateRequestedAt, value)
		return waitFor(st, "rotation "+value+" handled", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRotateRequest == value
		})
	}
	// expectGrace checks that held works for the whole grace period after
	// its successor was stored (now), and stops only after it.
	expectGrace := func(held credential, grace time.Duration) {
		GinkgoHelper()
		Expect(held.works()).To(BeTrue(), "the held secret works right after the rotation")
		clk.Step(grace)
		Expect(held.works()).To(BeTrue(), "the held secret works until the end of its grace period")
		clk.Step(graceSlack + time.Second)
		Expect(held.works()).To(BeFalse(), "the held secret stops after its grace period")
	}

	It("only refreshes when the refresh after a renewal's rotate fails: one rotate, the held secret keeps its grace", func() {
		st, held := rotating("refresh-fails", func(st *v1alpha1.ServiceToken) {
			st.Spec.Duration = "30h"
			st.Spec.Renewal = &v1alpha1.Renewal{Before: "10h", Action: v1alpha1.RenewalRotate}
		})
		expires := st.Status.ExpiresAt.Time
		op.hooks.mu.Lock()
		op.hooks.refreshFailures = 3
		op.hooks.mu.Unlock()
		clk.Step(st.Status.RenewalTime.Sub(clk.Now()) + time.Second)
		poke(st)
		st = waitFor(st, "renewed", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.ExpiresAt.After(expires)
		})
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(1), "a retry after 'rotated, refresh failed' only refreshes")
		Expect(callsOn("refresh", st.Status.TokenID)+callsOn("update", st.Status.TokenID)).To(Equal(1),
			"one renewal of the lifetime reached Cloudflare: the failed ones never did")
		Expect(st.Status.RenewalRotation).To(BeEmpty(), "the renewal is complete")
		Expect(credentialOf(st).works()).To(BeTrue())
		expectGrace(held, time.Hour)
	})

	It("finishes a rotation in flight when the manager is stopped (a rollout): the new manager does not rotate again", func() {
		st, held := rotating("sigterm")
		inflight, cutOff := make(chan struct{}), make(chan bool, 1)
		op.hooks.whileRotating = func(ctx context.Context) error {
			close(inflight)
			select {
			case <-ctx.Done(): // the shutdown reached the call: its response is lost
				cutOff <- true
				return lostResponse()
			case <-time.After(500 * time.Millisecond):
				cutOff <- false
				return nil
			}
		}
		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "rollout")
		Eventually(inflight, timeout).Should(BeClosed())
		op.stop() // SIGTERM: the manager's context is cancelled mid-call
		Expect(<-cutOff).To(BeFalse(), "the issuance did not listen to the shutdown")
		st = get(st)
		Expect(st.Status.PendingOperation).To(BeNil(), "the issuance ran to its status write before the manager exited")
		Expect(st.Status.LastHandledRotateRequest).To(Equal("rollout"))

		op = startOperator(ns, Options{})
		st = waitReady(st)
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(1))
		Expect(credentialOf(st).works()).To(BeTrue())
		Expect(op.events.reasons(st)).NotTo(ContainElement(v1alpha1.ReasonRotationLost))
		expectGrace(held, time.Hour)
	})

	It("settles a rotation whose status write conflicted with an edit of the ServiceToken by its operation ID", func() {
		st, held := rotating("edited")
		op.hooks.whileRotating = func(context.Context) error {
			defer GinkgoRecover()
			cur := get(st)
			base := cur.DeepCopy()
			cur.Labels = map[string]string{"team": "payments"}
			Expect(k8s.Patch(ctx(), cur, client.MergeFrom(base))).To(Succeed())
			return nil
		}
		st = requestRotation(st, "edit")
		Expect(st.Labels).To(HaveKeyWithValue("team", "payments"))
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(1))
		Expect(secretOf(st).Annotations).To(HaveKey(v1alpha1.AnnotationOperationID))
		Expect(credentialOf(st).works()).To(BeTrue())
		expectGrace(held, time.Hour)
	})

	It("stores the new secret when another tool annotates the Secret during the rotation, and keeps the annotation", func() {
		st, held := rotating("annotated")
		op.hooks.whileRotating = func(context.Context) error {
			defer GinkgoRecover()
			patchSecret(st, func(s *corev1.Secret) { s.Annotations["backup.example.com/last"] = "now" })
			return nil
		}
		st = requestRotation(st, "annotate")
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(1))
		Expect(secretOf(st).Annotations).To(HaveKeyWithValue("backup.example.com/last", "now"))
		Expect(credentialOf(st).works()).To(BeTrue())
		expectGrace(held, time.Hour)
	})

	It("keeps the original zone token with its grace when the create of its replacement loses its response", func() {
		st, held := rotating("zone-lost", func(st *v1alpha1.ServiceToken) { st.Spec.ZoneID = testZoneID })
		original := st.Status.TokenID
		op.hooks.afterCreate = lostResponse
		st = requestRotation(st, "replace")
		Expect(st.Status.TokenID).NotTo(Equal(original))
		Expect(st.Status.PreviousTokenID).To(Equal(original))
		Expect(tokenIDs(tokenName(st))).To(ConsistOf(original, st.Status.TokenID), "the lost replacement, held by nobody, was deleted")
		Expect(credentialOf(st).works()).To(BeTrue())

		Expect(held.works()).To(BeTrue())
		clk.Step(time.Hour)
		poke(st)
		Consistently(held.works, time.Second, interval).Should(BeTrue(), "the original works for its whole grace period")
		clk.Step(graceSlack + 2*time.Second)
		poke(st)
		waitFor(st, "original deleted after its grace", func(st *v1alpha1.ServiceToken) bool { return st.Status.PreviousTokenID == "" })
		Expect(held.works()).To(BeFalse())
	})

	It("adopts the token of a stored create whose status write was lost, even when a list misses it: no rotation, no second token", func() {
		var lost atomic.Bool
		op.calls.mu.Lock()
		op.calls.loseStatus = func(st *v1alpha1.ServiceToken) bool {
			// From the write that settles the create on, as if the process died
			// there: the secret is in the Secret, status never says so.
			if st.Name != "stored-create" {
				return false
			}
			return lost.Load() || (st.Status.TokenID != "" && st.Status.PendingOperation == nil && lost.CompareAndSwap(false, true))
		}
		op.calls.mu.Unlock()
		st := serviceToken(ns, "stored-create")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		Eventually(lost.Load, timeout, interval).Should(BeTrue())
		op.stop()
		held := credentialOf(st)
		ids := tokenIDs(tokenName(st))
		Expect(ids).To(HaveLen(1))
		Expect(get(st).Status.PendingOperation).NotTo(BeNil(), "the status write that settles the create was lost")

		op = startOperator(ns, Options{})
		op.hooks.mu.Lock()
		op.hooks.hideFromLists = ids[0] // a list that misses the token: only a GET may decide
		op.hooks.mu.Unlock()
		st = waitReady(st)
		Expect(st.Status.TokenID).To(Equal(ids[0]))
		Expect(tokenIDs(tokenName(st))).To(HaveLen(1))
		Expect(callsOn("rotate", ids[0])).To(Equal(0), "the secret in the Secret is the token's own: nothing to recover")
		Expect(credentialOf(st)).To(Equal(held))
		Expect(held.works()).To(BeTrue())
		Expect(op.events.reasons(st)).NotTo(ContainElement("SecretLost"))
	})

	It("owns only its part of the Secret: others' labels, annotations, keys and finalizers survive every write, without a write loop", func() {
		st, _ := rotating("shared", func(st *v1alpha1.ServiceToken) {
			st.Spec.Secret = &v1alpha1.SecretTemplate{Labels: map[string]string{"app": "one"}}
		})
		patchSecret(st, func(s *corev1.Secret) {
			s.Labels["backup.example.com/include"] = "true"
			s.Annotations["policy.example.com/checked"] = "yes"
			s.Finalizers = append(s.Finalizers, "example.com/keep")
			s.Data["extra"] = []byte("theirs")
		})
		DeferCleanup(func() { patchSecret(st, func(s *corev1.Secret) { s.Finalizers = nil }) })
		update(st, func(st *v1alpha1.ServiceToken) { st.Spec.Secret.Labels = map[string]string{"app": "two"} })
		st = waitReady(st)
		st = requestRotation(st, "others")
		secret := secretOf(st)
		Expect(secret.Labels).To(HaveKeyWithValue("app", "two"))
		Expect(secret.Labels).To(HaveKeyWithValue("backup.example.com/include", "true"))
		Expect(secret.Annotations).To(HaveKeyWithValue("policy.example.com/checked", "yes"))
		Expect(secret.Finalizers).To(ContainElement("example.com/keep"))
		Expect(secret.Data).To(HaveKeyWithValue("extra", []byte("theirs")))
		Expect(credentialOf(st).works()).To(BeTrue())

		rv := secret.ResourceVersion
		poke(st)
		Consistently(func() string { return secretOf(st).ResourceVersion }, 2*time.Second, 100*time.Millisecond).Should(Equal(rv),
			"what others added is not a difference to correct")
	})

	It("re-keys the stored credential when spec.secret.keys is renamed, without a rotation", func() {
		st, held := rotating("rekey")
		update(st, func(st *v1alpha1.ServiceToken) {
			st.Spec.Secret = &v1alpha1.SecretTemplate{Keys: &v1alpha1.SecretKeys{ClientID: "ID", ClientSecret: "SECRET"}}
		})
		st = waitFor(st, "re-keyed", func(st *v1alpha1.ServiceToken) bool {
			_, ok := secretOf(st).Data["SECRET"]
			return isReady(st) && ok
		})
		data := secretOf(st).Data
		Expect(data).To(HaveKeyWithValue("ID", []byte(held.id)))
		Expect(string(data["SECRET"]) == held.secret).To(BeTrue(), "the same secret, under the new key")
		Expect(data).NotTo(HaveKey("client_id"))
		Expect(data).NotTo(HaveKey("client_secret"))
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(0))
	})

	It("stops with SecretNotWritable before issuing anything when the Secret cannot be written", func() {
		st, held := rotating("immutable")
		patchSecret(st, func(s *corev1.Secret) { s.Immutable = ptr(true) })
		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "blocked")
		st = waitFor(st, "SecretNotWritable", hasReason(v1alpha1.ConditionStalled, v1alpha1.ReasonSecretNotWritable))
		Expect(condition(st, v1alpha1.ConditionStalled).Message).To(ContainSubstring("no secret was issued"))
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(0), "nothing was minted that could not be stored")
		Expect(st.Status.PendingOperation).To(BeNil())
		Expect(held.works()).To(BeTrue())
		// The event is recorded after the status write.
		Eventually(func() []string { return op.events.reasons(st) }, timeout, interval).Should(ContainElement(v1alpha1.ReasonSecretNotWritable))
	})

	It("announces the one case Cloudflare forces: a committed rotate whose response was lost revokes the held secret", func() {
		st, held := rotating("lost-committed")
		clk.Step(time.Second) // time passes between the create and the rotate, so the rotate moves updated_at
		op.hooks.afterRotate = lostResponse
		st = requestRotation(st, "lost")
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(2))
		Expect(credentialOf(st).works()).To(BeTrue())
		Expect(held.works()).To(BeFalse(), "Cloudflare keeps one previous secret: the lost one took its place")
		Expect(st.Status.LastRotationLostTime).NotTo(BeNil())
		Expect(op.events.reasons(st)).To(ContainElement(v1alpha1.ReasonRotationLost))
		Expect(op.counters.lostRotations()).To(BeNumerically(">=", 1))
	})

	It("keeps recovering a lost rotate when the recovery rotation itself fails", func() {
		st, _ := rotating("lost-then-failed")
		clk.Step(time.Second)
		op.hooks.afterRotate = func() error {
			op.hooks.mu.Lock()
			op.hooks.beforeRotate = func() error { // the recovery's first try fails outright
				return &cf.Error{Kind: cf.KindTransient, Op: "rotate", HTTPStatus: 503, Message: "injected by test"}
			}
			op.hooks.mu.Unlock()
			return lostResponse()
		}
		st = requestRotation(st, "lost-twice")
		Expect(st.Status.LastRotationLostTime).NotTo(BeNil(), "the lost rotation was not forgotten when its recovery failed")
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(2))
		Expect(credentialOf(st).works()).To(BeTrue())
	})

	It("still refreshes a rotating renewal whose rotation is blocked, so the held secret does not expire", func() {
		st, held := rotating("blocked-renewal", func(st *v1alpha1.ServiceToken) {
			st.Spec.Duration = "30h"
			st.Spec.Renewal = &v1alpha1.Renewal{Before: "10h", Action: v1alpha1.RenewalRotate}
		})
		patchSecret(st, func(s *corev1.Secret) { s.Immutable = ptr(true) })
		st = waitReady(st)
		expires := st.Status.ExpiresAt.Time
		clk.Step(st.Status.RenewalTime.Sub(clk.Now()) + time.Second)
		poke(st)
		// The Warning event, not the condition: once the expiry is extended
		// nothing is due, and the next reconcile (the renewal waker wakes the
		// object at its planned time too) shows Ready again.
		Eventually(func() []string { return op.events.reasons(st) }, timeout, interval).Should(ContainElement(v1alpha1.ReasonSecretNotWritable))
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(0))
		tok, _ := simToken(st.Status.TokenID)
		Expect(tok.ExpiresAt).To(BeTemporally(">", expires), "the expiry was extended although the rotation could not be made")
		clk.Step(expires.Sub(clk.Now()) + time.Minute)
		Expect(held.works()).To(BeTrue(), "past the old expiry the held secret still works")
	})

	It("keeps the held secret's grace when a rotate failed before Cloudflare committed it", func() {
		st, held := rotating("lost-uncommitted")
		op.hooks.beforeRotate = lostResponse
		st = requestRotation(st, "uncommitted")
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(1), "updated_at did not move: the first rotate never happened")
		Expect(st.Status.LastRotationLostTime).To(BeNil())
		Expect(op.events.reasons(st)).NotTo(ContainElement(v1alpha1.ReasonRotationLost))
		Expect(credentialOf(st).works()).To(BeTrue())
		expectGrace(held, time.Hour)
	})

	It("counts a rotation in its grace period as the renewal's own: refreshes only, the older secret keeps its grace", func() {
		st, first := rotating("renew-in-grace", func(st *v1alpha1.ServiceToken) {
			st.Spec.Duration = "30h"
			st.Spec.Renewal = &v1alpha1.Renewal{Before: "10h", Action: v1alpha1.RenewalRotate}
			st.Spec.Rotation = &v1alpha1.Rotation{GracePeriod: "24h"}
		})
		st = requestRotation(st, "early")
		expires := st.Status.ExpiresAt.Time
		clk.Step(st.Status.RenewalTime.Sub(clk.Now()) + time.Second)
		poke(st)
		st = waitFor(st, "renewed", func(st *v1alpha1.ServiceToken) bool { return isReady(st) && st.Status.ExpiresAt.After(expires) })
		Expect(callsOn("rotate", st.Status.TokenID)).To(Equal(1), "the requested rotation serves the renewal")
		Expect(first.works()).To(BeTrue(), "the first secret is still in its grace period")
		Expect(credentialOf(st).works()).To(BeTrue())
	})

	It("waits for a running grace period to end before rotating again", func() {
		st, first := rotating("back-to-back")
		st = requestRotation(st, "one")
		second := credentialOf(st)
		annotate(st, v1alpha1.AnnotationRotateRequestedAt, "two")
		st = waitFor(st, "deferred", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && strings.Contains(condition(st, v1alpha1.ConditionReady).Message, "waits until")
		})
		Expect(st.Status.LastHandledRotateRequest).To(Equal("one"))
		Expect(kstatus(st)).To(Equal(status.CurrentStatus), "a rotation waiting on a schedule does not hold up a GitOps sync")
		Expect(first.works()).To(BeTrue(), "the first secret keeps its grace")
		Expect(st.Status.RenewalTime.Time).To(BeTemporally("==", st.Status.PreviousSecretExpiresAt.Time))

		clk.Step(time.Hour + graceSlack + time.Second)
		poke(st)
		st = waitFor(st, "second rotation", func(st *v1alpha1.ServiceToken) bool {
			return isReady(st) && st.Status.LastHandledRotateRequest == "two"
		})
		Expect(second.works()).To(BeTrue(), "the second secret now has its grace")
		Expect(credentialOf(st).works()).To(BeTrue())
	})
})
