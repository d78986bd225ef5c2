package controller

import (
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

func TestClassify(t *testing.T) {
	opts := Options{}.withDefaults()
	cases := map[string]struct {
		err    error
		kind   outcomeKind
		reason string
		after  time.Duration
	}{
		"success":                     {nil, "ok", "", 0},
		"a conflicting Secret stalls": {terminal(v1alpha1.ReasonSecretConflict, "x"), "terminal", v1alpha1.ReasonSecretConflict, 0},
		"a missing account waits for the account watch":    {&causeError{Reason: v1alpha1.ReasonAccountNotFound}, "wait", v1alpha1.ReasonAccountNotFound, time.Minute},
		"a namespace the account excludes stalls":          {&causeError{Reason: v1alpha1.ReasonAccountNotAllowed, Terminal: true}, "terminal", v1alpha1.ReasonAccountNotAllowed, 0},
		"rejected credentials stall":                       {&cf.Error{Kind: cf.KindAuth}, "terminal", v1alpha1.ReasonUnauthorized, 0},
		"a rejected request stalls until the spec changes": {&cf.Error{Kind: cf.KindInvalid}, "terminal", v1alpha1.ReasonInvalidSpec, 0},
		"rate limiting waits as long as asked":             {&cf.Error{Kind: cf.KindRateLimited, RetryAfter: 42 * time.Second}, "wait", v1alpha1.ReasonRateLimited, 42 * time.Second},
		"a transient error backs off":                      {&cf.Error{Kind: cf.KindTransient}, "retry", v1alpha1.ReasonCloudflareError, 2 * time.Second},
		"a lost response backs off and looks again":        {&cf.Error{Kind: cf.KindOutcomeUnknown}, "retry", v1alpha1.ReasonCloudflareError, 2 * time.Second},
		"a wrapped error keeps its class":                  {errors.Join(errors.New("creating token"), &cf.Error{Kind: cf.KindAuth}), "terminal", v1alpha1.ReasonUnauthorized, 0},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			out := classify(c.err, opts, 0)
			g.Expect(out.kind).To(Equal(c.kind))
			g.Expect(out.reason).To(Equal(c.reason))
			g.Expect(out.after).To(Equal(c.after))
		})
	}
	NewWithT(t).Expect(classify(&cf.Error{Kind: cf.KindTransient}, opts, 3).after).To(Equal(16*time.Second), "backoff grows with persisted failures")
}

func TestDesiredUpdate(t *testing.T) {
	eff := v1alpha1.Effective{TokenName: "ns/app", Duration: "720h", Enabled: true}
	cases := map[string]struct {
		token       cf.Token
		changed     bool
		sendsExpiry bool
	}{
		"in sync":                             {cf.Token{Name: "ns/app", Duration: "720h", Enabled: true}, false, false},
		"the same duration spelled otherwise": {cf.Token{Name: "ns/app", Duration: "720h0m0s", Enabled: true}, false, false},
		// A PUT with a duration resets expiry: send it only when it differs.
		"renamed outside":          {cf.Token{Name: "other", Duration: "720h", Enabled: true}, true, false},
		"disabled outside":         {cf.Token{Name: "ns/app", Duration: "720h", Enabled: false}, true, false},
		"duration changed outside": {cf.Token{Name: "ns/app", Duration: "24h", Enabled: true}, true, true},
	}
	t.Run("a rename held back keeps the current name and sends no duration", func(t *testing.T) {
		g := NewWithT(t)
		_, changed := desiredUpdate(cf.Token{Name: "ns/app#uid", Duration: "720h", Enabled: true}, eff, "ns/app#uid")
		g.Expect(changed).To(BeFalse())
		spec, changed := desiredUpdate(cf.Token{Name: "ns/app#uid", Duration: "720h", Enabled: true}, eff, "ns/app")
		g.Expect(changed).To(BeTrue())
		g.Expect(spec).To(Equal(cf.TokenSpec{Name: "ns/app", Enabled: true}), "a rename alone leaves the expiry be")
	})
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			spec, changed := desiredUpdate(c.token, eff, eff.TokenName)
			g.Expect(changed).To(Equal(c.changed))
			if changed {
				g.Expect(spec.Name).To(Equal("ns/app"))
				g.Expect(spec.Enabled).To(BeTrue())
				g.Expect(spec.Duration != "").To(Equal(c.sendsExpiry))
			}
		})
	}
}

func TestSetConditions(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	healthy := func() *scope {
		st := &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
		s := newScope(st, now)
		s.token = &cf.Token{ID: "t1", ExpiresAt: now.Add(time.Hour)}
		s.secretOK, s.eff.Enabled = true, true
		return s
	}
	type want struct{ ready, reconciling, stalled metav1.ConditionStatus }
	cases := map[string]struct {
		scope func() *scope
		out   outcome
		want  want
	}{
		"healthy and done is Ready": {healthy, outcome{kind: "ok"}, want{"True", "False", "False"}},
		"a working credential stays Ready while rate limited": {healthy,
			outcome{kind: "wait", reason: v1alpha1.ReasonRateLimited}, want{"True", "True", "False"}},
		"a terminal problem is Stalled and not Ready": {healthy,
			outcome{kind: "terminal", reason: v1alpha1.ReasonUnauthorized}, want{"False", "False", "True"}},
		"an expired token is not Ready": {func() *scope { s := healthy(); s.token.ExpiresAt = now; return s },
			outcome{kind: "ok"}, want{"False", "True", "False"}},
		"a Secret without the credential is not Ready": {func() *scope { s := healthy(); s.secretOK = false; return s },
			outcome{kind: "retry", reason: v1alpha1.ReasonCloudflareError}, want{"False", "True", "False"}},
		"no token yet is in progress": {func() *scope { s := healthy(); s.token = nil; return s },
			outcome{kind: "wait", reason: v1alpha1.ReasonAccountNotFound}, want{"False", "True", "False"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			s := c.scope()
			setConditions(s, c.out)
			conds := s.st.Status.Conditions
			g.Expect(meta.FindStatusCondition(conds, v1alpha1.ConditionReady).Status).To(Equal(c.want.ready))
			g.Expect(meta.FindStatusCondition(conds, v1alpha1.ConditionReconciling).Status).To(Equal(c.want.reconciling))
			g.Expect(meta.FindStatusCondition(conds, v1alpha1.ConditionStalled).Status).To(Equal(c.want.stalled))
			for _, cond := range conds {
				g.Expect(cond.ObservedGeneration).To(Equal(int64(3)))
			}
		})
	}
}

func TestViewByNameNewestFirst(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v := View{byID: map[string]cf.Token{
		"a": {ID: "a", Name: "x", CreatedAt: t0},
		"b": {ID: "b", Name: "x", CreatedAt: t0.Add(2 * time.Minute)},
		"c": {ID: "c", Name: "y", CreatedAt: t0.Add(time.Minute)},
		"d": {ID: "d", Name: "x", CreatedAt: t0.Add(time.Minute)},
	}}
	var ids []string
	for _, tok := range v.ByName("x") {
		ids = append(ids, tok.ID)
	}
	g.Expect(ids).To(Equal([]string{"b", "d", "a"}))
	g.Expect(v.ByName("none")).To(BeEmpty())
}

func TestSetupRefusesAClusterNameThatIsNotADNSLabel(t *testing.T) {
	// Checked before the manager is touched: a bad flag fails at start.
	err := Setup(nil, SetupOptions{ServiceToken: Options{ClusterName: "EU_West"}})
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring(`invalid cluster name "EU_West"`)))
}
