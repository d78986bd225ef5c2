package controller

import (
	"errors"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

func TestClassifyAccount(t *testing.T) {
	acc := &account{Settings: v1alpha1.AccountSettings{AccountID: testAccountID}}
	ready := &metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReady}
	failing := &metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonCloudflareError}
	unreachable := &metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAccountUnreachable}
	notFound := &causeError{Reason: v1alpha1.ReasonCredentialsMissing, Message: "credentials Secret ns/creds not found"}
	cases := map[string]struct {
		err     error
		prev    *metav1.Condition
		outcome accountOutcome
		reason  string
	}{
		"working credentials are Ready":                           {nil, nil, accountReady, v1alpha1.ReasonReady},
		"a credentials Secret not created yet is Reconciling":     {notFound, nil, accountReconciling, v1alpha1.ReasonCredentialsMissing},
		"a Secret that lost its credentials no longer is Ready":   {notFound, ready, accountReconciling, v1alpha1.ReasonCredentialsMissing},
		"a Secret without the opt-in label stalls":                {&causeError{Reason: v1alpha1.ReasonCredentialsNotOptedIn, Terminal: true}, nil, accountStalled, v1alpha1.ReasonCredentialsNotOptedIn},
		"an API URL the operator does not allow stalls":           {&causeError{Reason: v1alpha1.ReasonAPIURLNotAllowed, Terminal: true}, nil, accountStalled, v1alpha1.ReasonAPIURLNotAllowed},
		"a read-only API token stalls":                            {&causeError{Reason: v1alpha1.ReasonCredentialsReadOnly, Terminal: true}, nil, accountStalled, v1alpha1.ReasonCredentialsReadOnly},
		"credentials Cloudflare rejects stall":                    {&cf.Error{Kind: cf.KindAuth, HTTPStatus: 403}, ready, accountStalled, v1alpha1.ReasonCredentialsInvalid},
		"a request Cloudflare rejects stalls":                     {&cf.Error{Kind: cf.KindInvalid}, nil, accountStalled, v1alpha1.ReasonCredentialsInvalid},
		"a first 'cannot route to the account' is checked again":  {&cf.Error{Kind: cf.KindUnreachable, Codes: []int{7003}}, ready, accountReconciling, v1alpha1.ReasonAccountUnreachable},
		"a confirmed 'cannot route to the account' stalls":        {&cf.Error{Kind: cf.KindUnreachable, Codes: []int{7003}}, unreachable, accountStalled, v1alpha1.ReasonAccountUnreachable},
		"a Cloudflare outage of a new account is Reconciling":     {&cf.Error{Kind: cf.KindTransient, HTTPStatus: 503}, nil, accountReconciling, v1alpha1.ReasonCloudflareError},
		"a Cloudflare outage of a failing account is Reconciling": {&cf.Error{Kind: cf.KindTransient}, failing, accountReconciling, v1alpha1.ReasonCloudflareError},
		"a Cloudflare outage keeps a Ready account Ready":         {&cf.Error{Kind: cf.KindTransient}, ready, accountKeep, ""},
		"an API server error keeps a Ready account Ready":         {fmt.Errorf("reading credentials Secret: %w", errors.New("etcd timeout")), ready, accountKeep, ""},
		"rate limiting of a new account is Reconciling":           {&cf.Error{Kind: cf.KindRateLimited, RetryAfter: time.Second}, nil, accountReconciling, v1alpha1.ReasonRateLimited},
		"rate limiting keeps a Ready account Ready":               {&cf.Error{Kind: cf.KindRateLimited, RetryAfter: time.Second}, ready, accountKeep, ""},
		"a wrapped error keeps its class":                         {fmt.Errorf("listing: %w", &cf.Error{Kind: cf.KindAuth}), nil, accountStalled, v1alpha1.ReasonCredentialsInvalid},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			v := classifyAccount(acc, c.err, c.prev)
			g.Expect(v.Outcome).To(Equal(c.outcome))
			g.Expect(v.Reason).To(Equal(c.reason))
			if c.outcome == accountKeep {
				return
			}
			var conds []metav1.Condition
			setAccountConditions(&conds, 3, v)
			want := map[accountOutcome][3]metav1.ConditionStatus{ // Ready, Reconciling, Stalled
				accountReady:       {metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionFalse},
				accountReconciling: {metav1.ConditionFalse, metav1.ConditionTrue, metav1.ConditionFalse},
				accountStalled:     {metav1.ConditionFalse, metav1.ConditionFalse, metav1.ConditionTrue},
			}[c.outcome]
			for i, typ := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionReconciling, v1alpha1.ConditionStalled} {
				got := meta.FindStatusCondition(conds, typ)
				g.Expect(got).NotTo(BeNil(), typ)
				g.Expect(got.Status).To(Equal(want[i]), typ)
				g.Expect(got.ObservedGeneration).To(BeEquivalentTo(3), typ)
			}
		})
	}
}

// Flux and Argo CD fail a sync on Stalled: an account is Stalled only for
// what a person must fix, and the credentials Secret is watched, so the fix
// is seen at once rather than at the next recheck.
var _ = Describe("An account's status for GitOps tools", func() {
	var ns string
	var op *operator
	BeforeEach(func() {
		ns = newNamespace(nil)
		// A recheck far beyond the test: only the watch can bring the account back.
		op = startOperator(ns, Options{}, func(so *SetupOptions) { so.CredentialsRecheck = time.Hour })
		DeferCleanup(func() { op.stop() })
	})
	account := func(secret string) *v1alpha1.CloudflareAccount {
		acc := cfAccount(ns, "cf")
		acc.Spec.CredentialsRef.Name = secret
		Expect(k8s.Create(ctx(), acc)).To(Succeed())
		return acc
	}
	conditions := func(acc *v1alpha1.CloudflareAccount) map[string]metav1.ConditionStatus {
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(acc), acc)).To(Succeed())
		out := map[string]metav1.ConditionStatus{}
		for _, c := range acc.Status.Conditions {
			out[c.Type+"/"+c.Reason] = c.Status
		}
		return out
	}

	It("is Reconciling, not Stalled, while its credentials Secret does not exist, and Ready as soon as it is created", func() {
		acc := account("later")
		Eventually(func() map[string]metav1.ConditionStatus { return conditions(acc) }, timeout, interval).Should(Equal(map[string]metav1.ConditionStatus{
			"Ready/" + v1alpha1.ReasonCredentialsMissing:       metav1.ConditionFalse,
			"Reconciling/" + v1alpha1.ReasonCredentialsMissing: metav1.ConditionTrue,
			"Stalled/" + v1alpha1.ReasonCredentialsMissing:     metav1.ConditionFalse,
		}))
		Expect(k8s.Create(ctx(), credentialsSecret(ns, "later", testAPIToken))).To(Succeed())
		waitAccountReason(ns, "cf", v1alpha1.ReasonReady)
		Expect(conditions(acc)).To(HaveKeyWithValue("Stalled/"+v1alpha1.ReasonReady, metav1.ConditionFalse))
	})

	It("is Stalled while Cloudflare rejects its API token, and Ready as soon as the token in the Secret is fixed", func() {
		secret := credentialsSecret(ns, "creds", "a-token-cloudflare-does-not-know")
		Expect(k8s.Create(ctx(), secret)).To(Succeed())
		acc := account("creds")
		Eventually(func() map[string]metav1.ConditionStatus { return conditions(acc) }, timeout, interval).Should(Equal(map[string]metav1.ConditionStatus{
			"Ready/" + v1alpha1.ReasonCredentialsInvalid:       metav1.ConditionFalse,
			"Reconciling/" + v1alpha1.ReasonCredentialsInvalid: metav1.ConditionFalse,
			"Stalled/" + v1alpha1.ReasonCredentialsInvalid:     metav1.ConditionTrue,
		}))

		By("rotating the API token in the Secret")
		Eventually(func() error {
			s := &corev1.Secret{}
			if err := k8s.Get(ctx(), client.ObjectKeyFromObject(secret), s); err != nil {
				return err
			}
			s.Data = map[string][]byte{"apiToken": []byte(testAPIToken)}
			return k8s.Update(ctx(), s)
		}, timeout, interval).Should(Succeed())
		waitAccountReason(ns, "cf", v1alpha1.ReasonReady)
		Expect(conditions(acc)).To(HaveKeyWithValue("Stalled/"+v1alpha1.ReasonReady, metav1.ConditionFalse))
	})
})
