package v1alpha1

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestParseTokenDuration(t *testing.T) {
	cases := []struct {
		in      string
		want    time.Duration
		forever bool
		wantErr string
	}{
		{in: "forever", forever: true},
		{in: "8760h", want: 8760 * time.Hour},
		{in: "2h45m", want: 2*time.Hour + 45*time.Minute},
		{in: "1m", want: time.Minute},
		{in: "90000ms", want: 90 * time.Second},
		{in: "59s", wantErr: "at least 1m"},
		{in: "0s", wantErr: "at least 1m"},
		{in: "-1h", wantErr: "at least 1m"},
		{in: "1 year", wantErr: "want a Go duration"},
		{in: "", wantErr: "want a Go duration"},
		{in: "Forever", wantErr: "want a Go duration"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			g := NewWithT(t)
			d, forever, err := ParseTokenDuration(c.in)
			if c.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(c.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d).To(Equal(c.want))
			g.Expect(forever).To(Equal(c.forever))
		})
	}
}

func token(spec ServiceTokenSpec) *ServiceToken {
	return &ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "api", UID: "0f1e2d3c"}, Spec: spec}
}

func TestEffectiveAppliesDocumentedDefaults(t *testing.T) {
	g := NewWithT(t)
	st := token(ServiceTokenSpec{AccountRef: AccountReference{Name: "prod"}})
	e, err := st.Effective()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e).To(Equal(Effective{
		TokenName:       "team-a/api#0f1e2d3c",
		Duration:        "8760h",
		DurationValue:   8760 * time.Hour,
		Enabled:         true,
		RenewBefore:     8760 * time.Hour / 3,
		RenewalAction:   RenewalRefresh,
		GracePeriod:     24 * time.Hour,
		SecretName:      "api",
		ClientIDKey:     "client_id",
		ClientSecretKey: "client_secret",
		DeletionPolicy:  DeletionDelete,
		AccountKind:     KindCloudflareAccount,
	}))
	g.Expect(st.Spec).To(Equal(ServiceTokenSpec{AccountRef: AccountReference{Name: "prod"}}), "defaults must never be written into spec")
}

func TestEffectiveHonoursEverySetting(t *testing.T) {
	g := NewWithT(t)
	off := false
	e, err := token(ServiceTokenSpec{
		AccountRef:     AccountReference{Kind: KindClusterCloudflareAcc, Name: "prod"},
		TokenName:      "custom",
		Duration:       "720h",
		Enabled:        &off,
		Renewal:        &Renewal{Before: "240h", Action: RenewalRotate},
		Rotation:       &Rotation{Every: "168h", GracePeriod: "1h"},
		Secret:         &SecretTemplate{Name: "creds", Keys: &SecretKeys{ClientID: "ID", ClientSecret: "SECRET"}},
		DeletionPolicy: DeletionOrphan,
	}).Effective()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e.TokenName).To(Equal("custom"))
	g.Expect(e.DurationValue).To(Equal(720 * time.Hour))
	g.Expect(e.Enabled).To(BeFalse())
	g.Expect(e.RenewBefore).To(Equal(240 * time.Hour))
	g.Expect(e.RenewalAction).To(Equal(RenewalRotate))
	g.Expect(e.RotateEvery).To(Equal(168 * time.Hour))
	g.Expect(e.GracePeriod).To(Equal(time.Hour))
	g.Expect([]string{e.SecretName, e.ClientIDKey, e.ClientSecretKey}).To(Equal([]string{"creds", "ID", "SECRET"}))
	g.Expect(e.DeletionPolicy).To(Equal(DeletionOrphan))
	g.Expect(e.AccountKind).To(Equal(KindClusterCloudflareAcc))
}

func TestDefaultTokenNameCarriesTheObjectsIdentity(t *testing.T) {
	for _, c := range []struct {
		name, cluster string
		uid           types.UID
		want          string
	}{
		{"without a cluster name: namespace/name#uid", "", "0f1e2d3c", "team-a/api#0f1e2d3c"},
		{"with a cluster name: namespace/name@cluster#uid", "eu-west", "0f1e2d3c", "team-a/api@eu-west#0f1e2d3c"},
		{"an object not yet created has no marker", "eu-west", "", "team-a/api@eu-west"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			st := token(ServiceTokenSpec{})
			st.UID = c.uid
			e, err := st.EffectiveIn(c.cluster)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(e.TokenName).To(Equal(c.want))
			g.Expect(DefaultTokenName("team-a", "api", c.cluster, c.uid)).To(Equal(c.want))
		})
	}
}

func TestMarkedTokenNameAppendsTheMarkerOnce(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"an explicit name gets the marker", "payments api", "payments api#0f1e2d3c"},
		{"a default name already ends with it", "team-a/api#0f1e2d3c", "team-a/api#0f1e2d3c"},
		{"another object's marker is not ours", "team-a/api#ffff", "team-a/api#ffff#0f1e2d3c"},
	} {
		t.Run(c.name, func(t *testing.T) {
			NewWithT(t).Expect(MarkedTokenName(c.in, "0f1e2d3c")).To(Equal(c.want))
		})
	}
}

func TestEffectiveEdgeCases(t *testing.T) {
	cases := map[string]struct {
		spec    ServiceTokenSpec
		check   func(g Gomega, e Effective)
		wantErr string
	}{
		"a forever token never needs a valid renewal window": {
			spec:  ServiceTokenSpec{Duration: "forever", Renewal: &Renewal{Before: "100000h"}},
			check: func(g Gomega, e Effective) { g.Expect(e.Forever).To(BeTrue()) },
		},
		"the grace period is capped at rotation.every": {
			spec:  ServiceTokenSpec{Rotation: &Rotation{Every: "1h"}},
			check: func(g Gomega, e Effective) { g.Expect(e.GracePeriod).To(Equal(time.Hour)) },
		},
		"a zero grace period is kept": {
			spec:  ServiceTokenSpec{Rotation: &Rotation{GracePeriod: "0s"}},
			check: func(g Gomega, e Effective) { g.Expect(e.GracePeriod).To(BeZero()) },
		},
		"renewal.before as long as duration is refused": {
			spec: ServiceTokenSpec{Duration: "1h", Renewal: &Renewal{Before: "1h"}}, wantErr: "shorter than duration",
		},
		"an unparsable renewal.before is refused": {
			spec: ServiceTokenSpec{Renewal: &Renewal{Before: "soon"}}, wantErr: "invalid renewal.before",
		},
		"a negative grace period is refused": {
			spec: ServiceTokenSpec{Rotation: &Rotation{GracePeriod: "-1h"}}, wantErr: "must not be negative",
		},
		"equal Secret keys are refused": {
			spec: ServiceTokenSpec{Secret: &SecretTemplate{Keys: &SecretKeys{ClientSecret: "client_id"}}}, wantErr: "are both",
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			e, err := token(c.spec).Effective()
			if c.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(c.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			c.check(g, e)
		})
	}
}

func TestAccountDefaults(t *testing.T) {
	g := NewWithT(t)
	var a AccountSettings
	n, p := a.EffectiveRateLimit()
	g.Expect(n).To(Equal(1000))
	g.Expect(p).To(Equal(5 * time.Minute))
	g.Expect(a.EffectiveAPIURL("")).To(Equal(DefaultAPIURL))
	g.Expect(a.EffectiveAPIURL("http://127.0.0.1:8787/client/v4/")).To(Equal("http://127.0.0.1:8787/client/v4"))

	req := int32(120)
	a = AccountSettings{APIURL: "https://proxy.example/client/v4", RateLimit: &RateLimit{Requests: &req, Period: "10s"}}
	n, p = a.EffectiveRateLimit()
	g.Expect(n).To(Equal(120))
	g.Expect(p).To(Equal(10 * time.Second))
	g.Expect(a.EffectiveAPIURL("http://ignored")).To(Equal("https://proxy.example/client/v4"))

	g.Expect(CredentialsKeys{}.TokenKey()).To(Equal("apiToken"))
	g.Expect(CredentialsKeys{}.Legacy()).To(BeFalse())
	g.Expect(CredentialsKeys{APIKeyKey: "key", EmailKey: "email"}.Legacy()).To(BeTrue())
}

func TestSameDuration(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"720h", "720h", true},
		{"1h", "60m", true},
		{"1h0m0s", "1h", true},
		{"1h", "2h", false},
		{"forever", "forever", true},
		{"forever", "8760h", false},
		{"", "1h", false},
	} {
		if got := SameDuration(tc.a, tc.b); got != tc.same {
			t.Errorf("SameDuration(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}
