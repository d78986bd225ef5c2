package plugin

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

func TestRelativeTimes(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		t    *metav1.Time
		want string
	}{
		{"unset", nil, "-"},
		{"29 days and some hours ahead", at(now.Add(29*24*time.Hour + 5*time.Hour)), "in 29d"},
		{"three hours and a bit ago", at(now.Add(-3*time.Hour - 20*time.Minute)), "3h ago"},
		{"45 seconds ahead", at(now.Add(45 * time.Second)), "in 45s"},
		{"90 minutes ahead", at(now.Add(90 * time.Minute)), "in 1h"},
		{"two years ago", at(now.Add(-2 * 366 * 24 * time.Hour)), "2y ago"},
		{"within half a second", at(now.Add(400 * time.Millisecond)), "now"},
	} {
		if got := relative(c.t, now); got != c.want {
			t.Errorf("%s: relative = %q, want %q", c.name, got, c.want)
		}
	}
}

// table is the expected output, one string a line.
func table(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

func TestStatusShowsReadinessExpiryAndRenewalRelativeToNow(t *testing.T) {
	cluster(t)
	ns, other := namespace(t), namespace(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(now)

	// Other tests' tokens are in the cluster too: -A selects by a team
	// name of this test's own.
	teamX, teamY := ns+"-x", ns+"-y"
	ok := token(t, ns, "api", labelled(teamX))
	setStatus(t, ok, readyCond(), 1, func(s *v1alpha1.ServiceTokenStatus) {
		s.TokenID = "tok-1"
		s.ExpiresAt = at(now.Add(29*24*time.Hour + 5*time.Hour))
		s.RenewalTime = at(now.Add(19 * 24 * time.Hour))
		s.LastRotationTime = at(now.Add(-3 * time.Hour))
	})
	failing := token(t, ns, "batch", labelled(teamY))
	setStatus(t, failing, failedCond(v1alpha1.ReasonCloudflareError, "HTTP 500"), 1, func(s *v1alpha1.ServiceTokenStatus) {
		s.TokenID = "tok-2"
		s.ExpiresAt = at(now.Add(-2 * time.Hour))
		s.LastRotationTime = at(now.Add(-400 * 24 * time.Hour))
	})
	forever := token(t, ns, "forever", func(st *v1alpha1.ServiceToken) { st.Spec.Duration = v1alpha1.DurationForever })
	setStatus(t, forever, readyCond(), 1, func(s *v1alpha1.ServiceTokenStatus) { s.TokenID = "tok-3" })
	token(t, ns, "new", nil) // no status yet
	elsewhere := token(t, other, "web", labelled(teamX))
	setStatus(t, elsewhere, failedCond(v1alpha1.ReasonAccountNotReady, "account example is not Ready"), 1, nil)
	kc := kubeconfig(t, "")

	out, _, err := run(t, kc, clk, "status", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	want := table(
		"NAME      READY     REASON            EXPIRES   NEXT RENEWAL   LAST ROTATION",
		"api       True      -                 in 29d    in 19d         3h ago",
		"batch     False     CloudflareError   2h ago    -              1y ago",
		"forever   True      -                 never     -              -",
		"new       Unknown   -                 -         -              -",
	)
	if got := out; got != want {
		t.Errorf("status -n:\n%s\nwant:\n%s", got, want)
	}

	// Named tokens, in the order given.
	out, _, err = run(t, kc, clk, "status", "-n", ns, "new", "api")
	if err != nil {
		t.Fatal(err)
	}
	if got := out; !strings.HasPrefix(strings.SplitN(got, "\n", 2)[1], "new ") || !strings.Contains(got, "\napi ") {
		t.Errorf("status new api:\n%s\nwant rows new then api", got)
	}

	// -A adds the NAMESPACE column; -l narrows to team x, in both namespaces.
	out, _, err = run(t, kc, clk, "status", "-A", "-l", "team="+teamX)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	wantRows := [][]string{
		{"NAMESPACE", "NAME", "READY", "REASON", "EXPIRES", "NEXT", "RENEWAL", "LAST", "ROTATION"},
		{ns, "api", "True", "-", "in", "29d", "in", "19d", "3h", "ago"},
		{other, "web", "False", "AccountNotReady", "-", "-", "-"},
	}
	if ns > other { // listed by namespace
		wantRows[1], wantRows[2] = wantRows[2], wantRows[1]
	}
	if !reflect.DeepEqual(rows, wantRows) {
		t.Errorf("status -A -l team=x:\n%s\nwant the rows (as fields) %q", out, wantRows)
	}

	// An empty selection is said, not an error.
	out, stderr, err := run(t, kc, clk, "status", "-n", ns, "-l", "team=nobody")
	if err != nil || out != "" || !strings.Contains(stderr, "no ServiceTokens found in namespace "+ns) {
		t.Errorf("empty status: out %q, stderr %q, err %v", out, stderr, err)
	}
}
