package plugin

import (
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

func labelled(team string) func(*v1alpha1.ServiceToken) {
	return func(st *v1alpha1.ServiceToken) { st.Labels = map[string]string{"team": team} }
}

// annotations returns the rotate and refresh request values of each token.
func requests(t *testing.T, ns string, names ...string) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	for _, n := range names {
		a := get(t, ns, n).Annotations
		out[n] = [2]string{a[v1alpha1.AnnotationRotateRequestedAt], a[v1alpha1.AnnotationRefreshRequestedAt]}
	}
	return out
}

func TestRotateSetsTheRequestAnnotationOnNamedTokensOnly(t *testing.T) {
	cluster(t)
	ns := namespace(t)
	token(t, ns, "a", func(st *v1alpha1.ServiceToken) {
		st.Annotations = map[string]string{"owner": "payments"}
		st.Labels = map[string]string{"team": "x"}
		st.Spec.Duration = "720h"
	})
	token(t, ns, "b", nil)
	before := get(t, ns, "a")
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC))

	out, _, err := run(t, kubeconfig(t, ""), clk, "rotate", "a", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	if want := "servicetoken " + ns + "/a: rotation requested\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	after := get(t, ns, "a")
	if got, want := after.Annotations[v1alpha1.AnnotationRotateRequestedAt], "2026-03-01T12:00:00.000000005Z"; got != want {
		t.Errorf("rotate request = %q, want %q", got, want)
	}
	// Only the annotation changed: the merge patch leaves the rest alone.
	if after.Annotations["owner"] != "payments" || after.Labels["team"] != "x" || after.Spec.Duration != "720h" || after.Generation != before.Generation {
		t.Errorf("other fields changed: annotations %v, labels %v, duration %q, generation %d -> %d",
			after.Annotations, after.Labels, after.Spec.Duration, before.Generation, after.Generation)
	}
	if r := requests(t, ns, "b")["b"]; r != [2]string{} {
		t.Errorf("b got requests %v, want none", r)
	}

	// A second request is a new value, so the operator acts on it again.
	clk.Step(time.Second)
	if _, _, err := run(t, kubeconfig(t, ""), clk, "rotate", "a", "-n", ns); err != nil {
		t.Fatal(err)
	}
	if got := get(t, ns, "a").Annotations[v1alpha1.AnnotationRotateRequestedAt]; got != "2026-03-01T12:00:01.000000005Z" {
		t.Errorf("second rotate request = %q, want a new value", got)
	}
}

func TestRequestsUseTheKubeconfigContextNamespace(t *testing.T) {
	cluster(t)
	ns := namespace(t)
	token(t, ns, "a", nil)
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	if _, _, err := run(t, kubeconfig(t, ns), clk, "refresh", "a"); err != nil {
		t.Fatal(err)
	}
	if r := requests(t, ns, "a")["a"]; r != [2]string{"", "2026-03-01T12:00:00Z"} {
		t.Errorf("requests = %v, want a refresh request only", r)
	}
}

func TestRequestsSelectWithAllSelectorAndAllNamespaces(t *testing.T) {
	cluster(t)
	ns1, ns2 := namespace(t), namespace(t)
	// Team names of this test's own: -A must not reach other tests' tokens.
	teamX, teamY := ns1+"-x", ns1+"-y"
	token(t, ns1, "x1", labelled(teamX))
	token(t, ns1, "y1", labelled(teamY))
	token(t, ns1, "forever", func(st *v1alpha1.ServiceToken) { st.Spec.Duration = v1alpha1.DurationForever })
	token(t, ns2, "x2", labelled(teamX))
	token(t, ns2, "y2", labelled(teamY))
	kc := kubeconfig(t, "")
	clk := clocktesting.NewFakeClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	const t0, t1, t2 = "2026-03-01T12:00:00Z", "2026-03-01T13:00:00Z", "2026-03-01T14:00:00Z"

	// -l in one namespace.
	if _, _, err := run(t, kc, clk, "rotate", "-l", "team="+teamX, "-n", ns1); err != nil {
		t.Fatal(err)
	}
	// -l in every namespace.
	clk.Step(time.Hour)
	if _, _, err := run(t, kc, clk, "rotate", "-l", "team="+teamY, "-A"); err != nil {
		t.Fatal(err)
	}
	// --all in one namespace: refresh skips the forever token and says why.
	clk.Step(time.Hour)
	_, stderr, err := run(t, kc, clk, "refresh", "--all", "-n", ns1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, ns1+"/forever skipped: its duration is forever") {
		t.Errorf("stderr = %q, want the forever token named as skipped", stderr)
	}

	got := requests(t, ns1, "x1", "y1", "forever")
	for n, r := range requests(t, ns2, "x2", "y2") {
		got[n] = r
	}
	want := map[string][2]string{
		"x1": {t0, t2}, "y1": {t1, t2}, "forever": {"", ""},
		"x2": {"", ""}, "y2": {t1, ""},
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: requests (rotate, refresh) = %v, want %v", n, got[n], w)
		}
	}
}

func TestRequestsSkipATokenBeingDeleted(t *testing.T) {
	cluster(t)
	ns := namespace(t)
	st := token(t, ns, "going", func(st *v1alpha1.ServiceToken) { st.Finalizers = []string{v1alpha1.Finalizer} })
	if err := k8s.Delete(testCtx, st); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // let the namespace go
		st := get(t, ns, "going")
		st.Finalizers = nil
		_ = k8s.Update(testCtx, st)
	})
	clk := clocktesting.NewFakeClock(time.Now())
	_, stderr, err := run(t, kubeconfig(t, ns), clk, "rotate", "going")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "skipped: it is being deleted") {
		t.Errorf("stderr = %q, want a skip message", stderr)
	}
	if r := requests(t, ns, "going")["going"]; r != [2]string{} {
		t.Errorf("requests = %v, want none on a token being deleted", r)
	}
}

func TestRequestsRefuseAmbiguousOrMissingSelections(t *testing.T) {
	cluster(t)
	ns := namespace(t)
	token(t, ns, "a", labelled("x"))
	kc := kubeconfig(t, ns)
	clk := clocktesting.NewFakeClock(time.Now())
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rotate"}, "give one or more ServiceToken names, --all or -l/--selector"},
		{[]string{"rotate", "-A"}, "give one or more ServiceToken names, --all or -l/--selector"},
		{[]string{"rotate", "a", "--all"}, "names or --all, not both"},
		{[]string{"rotate", "a", "-l", "team=x"}, "names or -l/--selector, not both"},
		{[]string{"rotate", "a", "-A"}, "cannot be combined with -A"},
		{[]string{"rotate", "--all", "-l", "team=x"}, "--all or -l/--selector, not both"},
		{[]string{"refresh", "-l", "team in (x"}, "invalid selector"},
		{[]string{"refresh", "missing"}, "not found"},
		{[]string{"refresh", "-l", "team=nobody"}, "no ServiceTokens found in namespace " + ns + ` matching "team=nobody"`},
	} {
		_, _, err := run(t, kc, clk, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want it to contain %q", c.args, err, c.want)
		}
	}
	if r := requests(t, ns, "a")["a"]; r != [2]string{} {
		t.Errorf("a refused command still set requests %v", r)
	}
}
