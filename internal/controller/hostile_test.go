package controller

import (
	"encoding/json"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// Hostile or mistaken objects: each ends in a clear condition reason and a
// Warning event, with nothing overwritten, nothing created that could not be
// stored, and nothing leaked.
var _ = Describe("A hostile or mistaken object", func() {
	const garbage = "garbage\x00\x01-credential-value-7b1d"

	type setup struct {
		ns, other string
		foreign   *corev1.Secret
	}
	type hostileCase struct {
		name    string
		prepare func(s *setup) *v1alpha1.ServiceToken
		reason  string
		message string // a fragment the Ready message must contain
		check   func(s *setup, st *v1alpha1.ServiceToken)
	}

	foreignUntouched := func(s *setup, _ *v1alpha1.ServiceToken) {
		after := &corev1.Secret{}
		Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(s.foreign), after)).To(Succeed())
		Expect(after.Data).To(Equal(map[string][]byte{"password": []byte("keep-me")}))
		Expect(after.OwnerReferences).To(BeEmpty())
		Expect(after.Labels).NotTo(HaveKey(v1alpha1.LabelManaged))
	}

	cases := []hostileCase{{
		name: "a Secret name that belongs to something else",
		prepare: func(s *setup) *v1alpha1.ServiceToken {
			s.foreign = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "app-db"}, StringData: map[string]string{"password": "keep-me"}}
			Expect(k8s.Create(ctx(), s.foreign)).To(Succeed())
			Expect(k8s.Create(ctx(), cfAccount(s.ns, "cf"))).To(Succeed())
			return serviceToken(s.ns, "steal", func(st *v1alpha1.ServiceToken) { st.Spec.Secret = &v1alpha1.SecretTemplate{Name: "app-db"} })
		},
		reason: v1alpha1.ReasonSecretConflict, message: "not managed by this ServiceToken",
		check: foreignUntouched,
	}, {
		name: "another namespace's account",
		prepare: func(s *setup) *v1alpha1.ServiceToken {
			s.other = newNamespace(nil)
			Expect(k8s.Create(ctx(), cfAccount(s.other, "theirs"))).To(Succeed())
			return serviceToken(s.ns, "borrow", func(st *v1alpha1.ServiceToken) { st.Spec.AccountRef.Name = "theirs" })
		},
		reason: v1alpha1.ReasonAccountNotFound, message: `"theirs" not found`,
	}, {
		name: "a ClusterCloudflareAccount whose selector excludes it",
		prepare: func(s *setup) *v1alpha1.ServiceToken {
			name := "cluster-" + s.ns
			Expect(k8s.Create(ctx(), &v1alpha1.ClusterCloudflareAccount{ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: v1alpha1.ClusterCloudflareAccountSpec{
					AccountSettings:   v1alpha1.AccountSettings{AccountID: testAccountID, APIURL: simURL},
					CredentialsRef:    v1alpha1.ClusterCredentialsReference{Name: "cloudflare-api", Namespace: s.ns},
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "payments"}},
				}})).To(Succeed())
			DeferCleanup(func() {
				_ = k8s.Delete(ctx(), &v1alpha1.ClusterCloudflareAccount{ObjectMeta: metav1.ObjectMeta{Name: name}})
			})
			return serviceToken(s.ns, "sneak", func(st *v1alpha1.ServiceToken) {
				st.Spec.AccountRef = v1alpha1.AccountReference{Kind: v1alpha1.KindClusterCloudflareAcc, Name: name}
			})
		},
		reason: v1alpha1.ReasonAccountNotAllowed, message: "does not allow namespace",
	}, {
		name: "a credentials Secret with a missing key",
		prepare: func(s *setup) *v1alpha1.ServiceToken {
			acct := cfAccount(s.ns, "cf")
			acct.Spec.CredentialsRef.APITokenKey = "noSuchKey"
			Expect(k8s.Create(ctx(), acct)).To(Succeed())
			return serviceToken(s.ns, "nokey")
		},
		reason: v1alpha1.ReasonAccountNotReady, message: `no key "noSuchKey"`,
	}, {
		name: "a credentials Secret with a garbage value",
		prepare: func(s *setup) *v1alpha1.ServiceToken {
			Expect(k8s.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "garbage", Labels: credentialsLabel()},
				Data: map[string][]byte{"apiToken": []byte(garbage)}})).To(Succeed())
			acct := cfAccount(s.ns, "cf")
			acct.Spec.CredentialsRef.Name = "garbage"
			Expect(k8s.Create(ctx(), acct)).To(Succeed())
			return serviceToken(s.ns, "garbled")
		},
		reason: v1alpha1.ReasonAccountNotReady, message: "does not hold a usable credential",
	}, {
		name: "an account whose apiURL is unreachable",
		prepare: func(s *setup) *v1alpha1.ServiceToken {
			acct := cfAccount(s.ns, "cf")
			acct.Spec.APIURL = unreachableURL
			Expect(k8s.Create(ctx(), acct)).To(Succeed())
			return serviceToken(s.ns, "nowhere")
		},
		reason: v1alpha1.ReasonAccountNotReady, message: "Cloudflare",
	}}

	for _, tc := range cases {
		It("ends clearly for "+tc.name, func() {
			s := &setup{ns: newNamespace(nil)}
			op := startOperator(s.ns, Options{})
			DeferCleanup(func() { op.stop() })
			st := tc.prepare(s)
			Expect(k8s.Create(ctx(), st)).To(Succeed())
			st = waitFor(st, "Ready=False, reason "+tc.reason, func(st *v1alpha1.ServiceToken) bool {
				c := condition(st, v1alpha1.ConditionReady)
				return c != nil && c.Status == metav1.ConditionFalse && c.Reason == tc.reason && strings.Contains(c.Message, tc.message)
			})
			Eventually(func() []string { return op.events.reasons(st) }, timeout, interval).Should(ContainElement(tc.reason),
				"a Warning event names the reason")
			for _, e := range op.events.all() {
				if e.Object == st.Namespace+"/"+st.Name && e.Reason == tc.reason {
					Expect(e.Type).To(Equal(corev1.EventTypeWarning))
				}
			}
			eff, err := st.Effective()
			Expect(err).NotTo(HaveOccurred())
			Expect(tokenIDs(eff.TokenName)).To(BeEmpty(), "no token is created that could not be used or stored")
			Expect(tokenIDs(v1alpha1.MarkedTokenName(eff.TokenName, st.UID))).To(BeEmpty(), "not even under its marked name")
			if tc.check != nil {
				tc.check(s, st)
			} else {
				Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: s.ns, Name: eff.SecretName}, &corev1.Secret{})).NotTo(Succeed(),
					"no Secret is written")
			}
			raw, err := json.Marshal(get(st))
			Expect(err).NotTo(HaveOccurred())
			for _, e := range op.events.all() {
				Expect(e.Note).NotTo(ContainSubstring(testAPIToken))
				Expect(e.Note).NotTo(ContainSubstring(garbage))
			}
			Expect(string(raw)).NotTo(ContainSubstring(testAPIToken))
			Expect(string(raw)).NotTo(ContainSubstring(garbage))
			expectNoSecretLeaks(op, st)
		})
	}

	It("copes with huge and unicode names", func() {
		ns := newNamespace(nil)
		Expect(k8s.Create(ctx(), cfAccount(ns, "cf"))).To(Succeed())
		op := startOperator(ns, Options{})
		DeferCleanup(func() { op.stop() })
		huge := serviceToken(ns, strings.Repeat("a", 240)+".b")
		uni := serviceToken(ns, "unicode", func(st *v1alpha1.ServiceToken) {
			st.Spec.TokenName = "équipe ☃ 日本語 \u202e/../<script>"
		})
		for _, st := range []*v1alpha1.ServiceToken{huge, uni} {
			Expect(k8s.Create(ctx(), st)).To(Succeed())
			got := waitReady(st)
			Expect(credentialOf(got).works()).To(BeTrue())
			eff, _ := got.Effective()
			Expect(tokenIDs(eff.TokenName)).To(HaveLen(1), "the name reaches Cloudflare unchanged")
		}
		expectNoSecretLeaks(op, huge, uni)
	})
})
