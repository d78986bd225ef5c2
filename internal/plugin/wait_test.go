package plugin

import (
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

func TestWaitReturnsWhenTokensAreReady(t *testing.T) {
	cluster(t)
	ns := namespace(t)
	a := token(t, ns, "a", labelled("x"))
	setStatus(t, a, readyCond(), 1, nil)
	b := token(t, ns, "b", labelled("x"))
	kc := kubeconfig(t, ns)

	// b becomes Ready while wait runs.
	marked := make(chan error, 1)
	go func() {
		time.Sleep(1500 * time.Millisecond)
		marked <- writeStatus(b, readyCond(), 1, nil)
	}()
	start := time.Now()
	out, _, err := run(t, kc, clock.RealClock{}, "wait", "-l", "team=x", "--timeout", "30s")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-marked; err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < time.Second {
		t.Errorf("wait returned after %s, before b was Ready", time.Since(start))
	}
	if want := "servicetoken " + ns + "/a is Ready\nservicetoken " + ns + "/b is Ready\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
}

func TestWaitTimesOutNamingEachTokenNotReadyAndWhy(t *testing.T) {
	cluster(t)
	ns := namespace(t)
	ready := token(t, ns, "ready", nil)
	setStatus(t, ready, readyCond(), 1, nil)
	failing := token(t, ns, "failing", nil)
	setStatus(t, failing, failedCond(v1alpha1.ReasonCredentialsInvalid, "the API token was rejected (HTTP 403)"), 1, nil)
	// Ready, but for the spec before the last change.
	stale := token(t, ns, "stale", nil)
	setStatus(t, stale, readyCond(), 1, nil)
	stale = get(t, ns, "stale")
	stale.Spec.Duration = "720h"
	if err := k8s.Update(testCtx, stale); err != nil {
		t.Fatal(err)
	}
	token(t, ns, "fresh", nil) // never reconciled
	kc := kubeconfig(t, ns)

	start := time.Now()
	_, _, err := run(t, kc, clock.RealClock{}, "wait", "ready", "failing", "stale", "fresh", "--timeout", "2s")
	if err == nil {
		t.Fatal("wait succeeded, want a timeout")
	}
	if took := time.Since(start); took < 2*time.Second || took > 10*time.Second {
		t.Errorf("wait gave up after %s, want about 2s", took)
	}
	want := "timed out after 2s; not Ready:\n" +
		"  " + ns + "/failing: CredentialsInvalid: the API token was rejected (HTTP 403)\n" +
		"  " + ns + "/stale: generation 2 not reconciled yet (Ready=True is for generation 1)\n" +
		"  " + ns + "/fresh: no Ready condition yet (is the operator running?)"
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
}

func TestWaitWithZeroTimeoutLooksOnce(t *testing.T) {
	cluster(t)
	ns := namespace(t)
	token(t, ns, "fresh", nil)
	_, _, err := run(t, kubeconfig(t, ns), clock.RealClock{}, "wait", "--all", "--timeout", "0")
	if err == nil || !strings.Contains(err.Error(), ns+"/fresh: no Ready condition yet") {
		t.Errorf("err = %v, want fresh named as not Ready", err)
	}
}

func TestWaitFailsAtOnceOnAMissingToken(t *testing.T) {
	cluster(t)
	ns := namespace(t)
	kc := kubeconfig(t, ns)
	for _, args := range [][]string{{"wait", "missing"}, {"wait", "-l", "team=nobody", "-A"}} {
		start := time.Now()
		_, _, err := run(t, kc, clock.RealClock{}, append(args, "--timeout", "30s")...)
		if err == nil {
			t.Errorf("%v succeeded", args)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%v took %s, want an error at once", args, time.Since(start))
		}
	}
}
