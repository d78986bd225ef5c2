package v1alpha1

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzParseTokenDuration: any string either parses to forever or a duration
// of at least one minute, or is rejected with an error that quotes it; it
// never panics.
func FuzzParseTokenDuration(f *testing.F) {
	for _, s := range []string{"forever", "8760h", "1m", "59s", "0", "-1h", "1.5h30m", "", "Forever", "9223372036854775807ns",
		"99999999999999999999h", "1h\x00", "１h", "1e3h", ".5m", "1m ", "💥"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, forever, err := ParseTokenDuration(s)
		switch {
		case err != nil:
			if d != 0 || forever {
				t.Fatalf("%q: error with a value (%v, %v)", s, d, forever)
			}
			if !strings.Contains(err.Error(), "invalid duration") {
				t.Fatalf("%q: unclear error %q", s, err)
			}
		case forever:
			if s != DurationForever || d != 0 {
				t.Fatalf("%q: forever with %v", s, d)
			}
		default:
			if d < time.Minute {
				t.Fatalf("%q: accepted %v below one minute", s, d)
			}
		}
	})
}

// FuzzEffective: defaulting a spec with arbitrary duration strings never
// panics, and what it accepts is consistent (renewal inside the duration,
// grace not negative and capped by rotation.every, distinct secret keys).
func FuzzEffective(f *testing.F) {
	f.Add("ns", "name", "720h", "240h", "Rotate", "1h", "1h", "a", "b")
	f.Add("ns", "name", "forever", "", "", "", "0s", "", "")
	f.Add("", "", "1m", "1m", "Refresh", "1m", "-1s", "x", "x")
	f.Add("ns", "n", "2562047h", "2562046h", "Rotate", "1ns", "99999h", "", "client_id")
	f.Fuzz(func(t *testing.T, ns, name, duration, before, action, every, grace, idKey, secretKey string) {
		st := &ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: ServiceTokenSpec{
			Duration: duration,
			Renewal:  &Renewal{Before: before, Action: RenewalAction(action)},
			Rotation: &Rotation{Every: every, GracePeriod: grace},
			Secret:   &SecretTemplate{Keys: &SecretKeys{ClientID: idKey, ClientSecret: secretKey}},
		}}
		e, err := st.Effective()
		if err != nil {
			return
		}
		if !e.Forever && (e.RenewBefore <= 0 || e.RenewBefore >= e.DurationValue) {
			t.Fatalf("renew before %v outside (0, %v)", e.RenewBefore, e.DurationValue)
		}
		if e.GracePeriod < 0 || (e.RotateEvery > 0 && e.GracePeriod > e.RotateEvery) {
			t.Fatalf("grace %v with every %v", e.GracePeriod, e.RotateEvery)
		}
		if e.ClientIDKey == e.ClientSecretKey {
			t.Fatalf("same key %q for both", e.ClientIDKey)
		}
	})
}
