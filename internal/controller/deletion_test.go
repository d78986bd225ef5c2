package controller

import (
	"slices"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
)

// Deletion never hangs: what never reached Cloudflare is released at once,
// the credentials outlive the tokens that need them, and finalizers are
// written without dropping anybody else's.
var _ = Describe("Deletion", func() {
	var (
		ns string
		op *operator
	)
	withOperator(&ns, &op, Options{})

	gone := func(obj client.Object) func() bool {
		return func() bool { return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKeyFromObject(obj), obj)) }
	}

	It("releases a ServiceToken that never got a token (a typo in accountRef) at once, without calling Cloudflare", func() {
		st := serviceToken(ns, "typo", func(st *v1alpha1.ServiceToken) { st.Spec.AccountRef.Name = "cf-typo" })
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitFor(st, "waiting for the account", hasReason(v1alpha1.ConditionReady, v1alpha1.ReasonAccountNotFound))
		Expect(st.Finalizers).To(ContainElement(v1alpha1.Finalizer))
		deletes := simulator.Stats().ByOp[sim.OpDelete]

		Expect(k8s.Delete(ctx(), st)).To(Succeed())
		Eventually(gone(st), timeout, interval).Should(BeTrue())
		Expect(simulator.Stats().ByOp[sim.OpDelete]).To(Equal(deletes), "nothing to delete in Cloudflare")
		Expect(op.events.reasons(st)).NotTo(ContainElement(v1alpha1.ReasonDeletionBlocked))
	})

	credentials := func(name string) *corev1.Secret {
		s := &corev1.Secret{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, s)).To(Succeed())
		return s
	}
	protected := func(name string) func() bool {
		return func() bool { return slices.Contains(credentials(name).Finalizers, v1alpha1.CredentialsFinalizer) }
	}
	protectedSecret := func() string {
		acc := &v1alpha1.CloudflareAccount{}
		Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "cf"}, acc)).To(Succeed())
		return acc.Status.ProtectedSecret
	}

	It("deletes the token when the credentials Secret was deleted first, also after a manager restart "+
		"(Secret, then account and ServiceToken: envtest runs no namespace controller)", func() {
		st := serviceToken(ns, "secret-first")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		id := st.Status.TokenID
		Eventually(protected("cloudflare-api"), timeout, interval).Should(BeTrue())
		Expect(protectedSecret()).To(Equal(ns + "/cloudflare-api"))

		secret := credentials("cloudflare-api")
		Expect(k8s.Delete(ctx(), secret)).To(Succeed())
		Expect(credentials("cloudflare-api").DeletionTimestamp).NotTo(BeNil(), "deleting, kept for the token's deletion")
		op.stop() // a new manager (a restart, a new leader) has no client cached
		op = startOperator(ns, Options{})
		acc := cfAccount(ns, "cf")
		Expect(k8s.Delete(ctx(), acc)).To(Succeed())
		Expect(k8s.Delete(ctx(), st)).To(Succeed())

		Eventually(gone(st), timeout, interval).Should(BeTrue())
		_, exists := simToken(id)
		Expect(exists).To(BeFalse(), "deleted in Cloudflare with the credentials of the deleting Secret")
		Expect(op.events.reasons(st)).NotTo(ContainElement(v1alpha1.ReasonDeletionBlocked))
		Eventually(gone(secret), timeout, interval).Should(BeTrue(), "released once no token needs it")
		Eventually(gone(acc), timeout, interval).Should(BeTrue())
	})

	It("keeps the credentials Secret only while a ServiceToken holds a token, and moves with spec.credentialsRef", func() {
		Consistently(protected("cloudflare-api"), time.Second, interval).Should(BeFalse(), "no ServiceToken: nothing to keep")
		st := serviceToken(ns, "holder")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		Eventually(protected("cloudflare-api"), timeout, interval).Should(BeTrue())

		Expect(k8s.Create(ctx(), credentialsSecret(ns, "cloudflare-api-2", testAPIToken))).To(Succeed())
		Eventually(func() error {
			acc := &v1alpha1.CloudflareAccount{}
			Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "cf"}, acc)).To(Succeed())
			acc.Spec.CredentialsRef.Name = "cloudflare-api-2"
			return k8s.Update(ctx(), acc)
		}, timeout, interval).Should(Succeed())
		Eventually(protected("cloudflare-api-2"), timeout, interval).Should(BeTrue())
		Eventually(protected("cloudflare-api"), timeout, interval).Should(BeFalse(), "the old Secret is released")
		Expect(protectedSecret()).To(Equal(ns + "/cloudflare-api-2"))

		Expect(k8s.Delete(ctx(), st)).To(Succeed())
		Eventually(gone(st), timeout, interval).Should(BeTrue())
		Eventually(protected("cloudflare-api-2"), timeout, interval).Should(BeFalse(), "the last token is gone")
		Eventually(protectedSecret, timeout, interval).Should(BeEmpty())
	})

	It("keeps another party's finalizer, also one added while ours was being added, and removes only its own", func() {
		const theirs = "example.com/keep"
		var added atomic.Bool
		var addErr atomic.Value
		op.calls.mu.Lock()
		op.calls.beforePatch = func(st *v1alpha1.ServiceToken) {
			if st.Name != "shared" || !added.CompareAndSwap(false, true) {
				return
			}
			// Another controller adds its finalizer after our read, before our write.
			cur := &v1alpha1.ServiceToken{}
			err := k8s.Get(ctx(), client.ObjectKeyFromObject(st), cur)
			if err == nil {
				cur.Finalizers = append(cur.Finalizers, theirs)
				err = k8s.Update(ctx(), cur)
			}
			if err != nil {
				addErr.Store(err.Error())
			}
		}
		op.calls.mu.Unlock()

		st := serviceToken(ns, "shared")
		Expect(k8s.Create(ctx(), st)).To(Succeed())
		st = waitReady(st)
		Expect(added.Load()).To(BeTrue())
		Expect(addErr.Load()).To(BeNil())
		Expect(st.Finalizers).To(ConsistOf(v1alpha1.Finalizer, theirs), "our stale write conflicted instead of dropping theirs")

		id := st.Status.TokenID
		Expect(k8s.Delete(ctx(), st)).To(Succeed())
		waitFor(st, "our finalizer removed", func(st *v1alpha1.ServiceToken) bool {
			return len(st.Finalizers) == 1 && st.Finalizers[0] == theirs
		})
		_, exists := simToken(id)
		Expect(exists).To(BeFalse(), "the token was deleted before our finalizer went")

		cur := get(st)
		cur.Finalizers = nil
		Expect(k8s.Update(ctx(), cur)).To(Succeed())
		Eventually(gone(st), timeout, interval).Should(BeTrue())
	})
})
