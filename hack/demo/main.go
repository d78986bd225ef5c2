// Command demo shows servicetoken-operator at work on one machine, with no
// cluster and no Cloudflare account: a local kube-apiserver + etcd (and
// kube-controller-manager's garbage collector when built), the Cloudflare
// simulator (cmd/cfsim) and the manager binary, all from test/harness.
//
// `make demo` runs it. It applies a credentials Secret, a CloudflareAccount
// and a ServiceToken (from config/samples), shows the Secret the operator
// writes, checks the credential the way Cloudflare Access would, rotates it
// and shows both secrets working during the grace period, then waits for
// Ctrl-C and cleans up. With CI=true (or -ci) it does not wait: it exits 0
// when every step worked, or non-zero naming the step that failed.
//
// It never prints a client secret: only a masked form (cfast_****…last4).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

const (
	totalSteps  = 7
	namespace   = "default"
	apiToken    = "demo-api-token" // the simulator's API token; never printed anyway
	gracePeriod = "1m"
	duration    = "10m"
	renewBefore = "5m"
	waitTimeout = 2 * time.Minute
)

// demo holds what the steps start, so cleanup can stop it.
type demo struct {
	ctx   context.Context
	out   io.Writer
	ci    bool
	dir   string
	keep  bool
	step  int
	title string

	managerBin, cfsimBin string
	cp                   *harness.ControlPlane
	gc                   bool
	sim                  *harness.Sim
	mgr                  *harness.Process
	c                    client.Client

	st                   *v1alpha1.ServiceToken
	clientID, secret     string
	clientIDKey, keyName string
}

func main() {
	ci := flag.Bool("ci", os.Getenv("CI") == "true", "run every step and exit instead of waiting for Ctrl-C (default from CI=true)")
	dir := flag.String("dir", "", "working directory for binaries, kubeconfigs and logs (default: a new temporary directory, removed on exit)")
	flag.Parse()
	// envtest logs through controller-runtime; the demo prints its own story.
	ctrllog.SetLogger(logr.Discard())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{ctx: ctx, out: os.Stdout, ci: *ci, dir: *dir, keep: *dir != ""}
	err := d.run()
	d.cleanup()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "\ndemo interrupted at step [%d/%d] %s\n", d.step, totalSteps, d.title)
		} else {
			fmt.Fprintf(os.Stderr, "\ndemo FAILED at step [%d/%d] %s: %v\n", d.step, totalSteps, d.title, err)
		}
		if d.mgr != nil && d.mgr.LogPath != "" && d.keep {
			fmt.Fprintf(os.Stderr, "manager log: %s\n", d.mgr.LogPath)
		}
		os.Exit(1)
	}
}

// printf narrates; if the terminal is gone there is no one left to tell.
func (d *demo) printf(format string, args ...any) { _, _ = fmt.Fprintf(d.out, format, args...) }

// begin announces a step.
func (d *demo) begin(title string) {
	d.step++
	d.title = title
	d.printf("\n[%d/%d] %s ...\n", d.step, totalSteps, title)
}

func (d *demo) run() error {
	if d.dir == "" {
		var err error
		if d.dir, err = os.MkdirTemp("", "servicetoken-demo-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	d.printf("servicetoken-operator demo: a local control plane, a simulated Cloudflare API and the operator.\n")
	d.printf("Working directory: %s\n", d.dir)
	for _, s := range []func() error{d.build, d.controlPlane, d.startOperator, d.apply, d.waitSecret, d.useCredential, d.rotate} {
		if err := s(); err != nil {
			return err
		}
		if err := d.ctx.Err(); err != nil {
			return err
		}
	}
	d.printf("\nEvery step worked.\n")
	if d.ci {
		d.printf("CI=true: not waiting; cleaning up.\n")
		return nil
	}
	d.tryIt()
	<-d.ctx.Done()
	d.printf("\nInterrupted: stopping the operator, the simulator and the control plane ...\n")
	return nil
}

// [1] build the manager and cfsim; the control-plane binaries too when
// missing (make demo builds them first).
func (d *demo) build() error {
	d.begin("Building the operator (manager) and the Cloudflare simulator (cfsim)")
	if _, err := testenv.AssetsDir(); err != nil {
		d.printf("    kube-apiserver/etcd not built yet: running hack/setup-envtest.sh (about 12 minutes on 2 cores, once) ...\n")
		cmd := exec.CommandContext(d.ctx, filepath.Join(testenv.RepoRoot(), "hack", "setup-envtest.sh"))
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("hack/setup-envtest.sh: %w", err)
		}
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		return err
	}
	_, kcmErr := os.Stat(filepath.Join(assets, "kube-controller-manager"))
	d.gc = kcmErr == nil
	start := time.Now()
	binDir := filepath.Join(d.dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	if d.managerBin, d.cfsimBin, err = harness.Binaries(binDir); err != nil {
		return err
	}
	d.printf("    built %s and %s in %s\n", d.managerBin, d.cfsimBin, since(start))
	d.printf("    control-plane binaries: %s\n", assets)
	return nil
}

// [2] kube-apiserver + etcd (+ kube-controller-manager's garbage collector).
func (d *demo) controlPlane() error {
	what := "kube-apiserver + etcd"
	if d.gc {
		what += " + kube-controller-manager (garbage collector)"
	}
	d.begin("Starting a local control plane: " + what)
	start := time.Now()
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{GarbageCollector: d.gc, Dir: d.dir})
	if err != nil {
		return err
	}
	d.cp, d.c = cp, cp.Client
	d.printf("    API server at %s, CRDs installed, up in %s\n", cp.Config.Host, since(start))
	if !d.gc {
		d.printf("    (no kube-controller-manager built: deleted ServiceTokens' Secrets will not be garbage-collected)\n")
	}
	return nil
}

// [3] cfsim and the manager.
func (d *demo) startOperator() error {
	d.begin("Starting the Cloudflare simulator and the operator")
	var acct v1alpha1.CloudflareAccount
	if err := readSample("access_v1alpha1_cloudflareaccount.yaml", &acct); err != nil {
		return err
	}
	sim, err := harness.StartSim(d.cfsimBin, d.dir, "--accounts="+acct.Spec.AccountID, "--api-tokens="+apiToken)
	if err != nil {
		return err
	}
	d.sim = sim
	d.printf("    cfsim serves the Cloudflare API at %s (account %s)\n", sim.APIURL(), acct.Spec.AccountID)
	mgr, err := harness.StartManager(d.managerBin, d.cp.Kubeconfig, d.dir, "manager", harness.AllowFlag(sim))
	if err != nil {
		return err
	}
	d.mgr = mgr
	time.Sleep(300 * time.Millisecond)
	if mgr.Exited() {
		return fmt.Errorf("the manager exited at once; its log: %s", mgr.LogPath)
	}
	d.printf("    manager running (pid %d), log: %s\n", mgr.Pid(), mgr.LogPath)
	return nil
}

// [4] the credentials Secret, a CloudflareAccount and a ServiceToken.
func (d *demo) apply() error {
	d.begin("Applying a credentials Secret, a CloudflareAccount and a ServiceToken (from config/samples)")
	acct := &v1alpha1.CloudflareAccount{}
	if err := readSample("access_v1alpha1_cloudflareaccount.yaml", acct); err != nil {
		return err
	}
	acct.Namespace = namespace
	acct.Spec.APIURL = d.sim.APIURL()
	key := acct.Spec.CredentialsRef.APITokenKey
	if key == "" {
		key = v1alpha1.DefaultAPITokenKey
	}
	// The label opts the Secret in to its use as Cloudflare credentials.
	cred := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: acct.Spec.CredentialsRef.Name,
		Labels: map[string]string{v1alpha1.LabelCredentials: "true"}},
		StringData: map[string]string{key: apiToken}}
	st := &v1alpha1.ServiceToken{}
	if err := readSample("access_v1alpha1_servicetoken.yaml", st); err != nil {
		return err
	}
	st.Namespace = namespace
	st.Spec.Duration = duration
	if st.Spec.Renewal == nil {
		st.Spec.Renewal = &v1alpha1.Renewal{}
	}
	st.Spec.Renewal.Before = renewBefore
	if st.Spec.Rotation == nil {
		st.Spec.Rotation = &v1alpha1.Rotation{}
	}
	st.Spec.Rotation.GracePeriod = gracePeriod
	d.clientIDKey, d.keyName = v1alpha1.DefaultClientIDKey, v1alpha1.DefaultClientSecretKey
	if k := st.Spec.Secret.Keys; k != nil {
		if k.ClientID != "" {
			d.clientIDKey = k.ClientID
		}
		if k.ClientSecret != "" {
			d.keyName = k.ClientSecret
		}
	}
	for _, o := range []client.Object{cred, acct, st} {
		if err := d.c.Create(d.ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	d.st = st
	d.printf("    Secret %s/%s (key %s: the Cloudflare API token)\n", namespace, cred.Name, key)
	d.printf("    CloudflareAccount %s/%s -> account %s at %s\n", namespace, acct.Name, acct.Spec.AccountID, acct.Spec.APIURL)
	show := map[string]any{"apiVersion": v1alpha1.GroupVersion.String(), "kind": "ServiceToken",
		"metadata": map[string]string{"name": st.Name, "namespace": st.Namespace}, "spec": st.Spec}
	b, err := yaml.Marshal(show)
	if err != nil {
		return err
	}
	d.printf("    ServiceToken (duration shortened to %s, renewal %s before expiry, grace period %s):\n%s",
		duration, renewBefore, gracePeriod, indent(string(b), "      "))
	return nil
}

// [5] the operator creates the token and writes the Secret.
func (d *demo) waitSecret() error {
	d.begin("Waiting for the operator to create the token in Cloudflare and write the Secret")
	start := time.Now()
	if err := d.waitFor("the ServiceToken to be Ready", func() bool {
		_ = d.c.Get(d.ctx, client.ObjectKeyFromObject(d.st), d.st)
		return meta.IsStatusConditionTrue(d.st.Status.Conditions, v1alpha1.ConditionReady)
	}); err != nil {
		return err
	}
	id, secret, err := d.credential()
	if err != nil {
		return err
	}
	if id == "" || secret == "" {
		return errors.New("the Secret lacks the client ID or secret")
	}
	d.clientID, d.secret = id, secret
	s := d.st.Status
	d.printf("    ServiceToken %s/%s Ready in %s: token %s, expires %s\n", namespace, d.st.Name, since(start), s.TokenID, clock(s.ExpiresAt))
	d.printf("    Secret %s/%s:\n", namespace, s.SecretName)
	d.printf("      %-24s %s\n", d.clientIDKey+":", id)
	d.printf("      %-24s %s   (masked)\n", d.keyName+":", mask(secret))
	return nil
}

// [6] check the credential like Access does.
func (d *demo) useCredential() error {
	d.begin("Using the credential against the simulated Access application")
	d.printf("    $ %s\n", d.curl(d.secret))
	code, body, err := d.verify(d.secret)
	if err != nil {
		return err
	}
	d.printf("    HTTP %d %s\n", code, body)
	if code != http.StatusOK {
		return fmt.Errorf("/_sim/verify answered %d for the Secret's credential", code)
	}
	return nil
}

// [7] rotation on request: new secret, old one valid for the grace period.
func (d *demo) rotate() error {
	d.begin("Rotating the secret on request, with a " + gracePeriod + " grace period for the old one")
	requested := time.Now().UTC().Format(time.RFC3339)
	d.printf("    $ kubectl annotate servicetoken %s %s=%s\n", d.st.Name, v1alpha1.AnnotationRotateRequestedAt, requested)
	if err := d.c.Get(d.ctx, client.ObjectKeyFromObject(d.st), d.st); err != nil {
		return err
	}
	patch := client.MergeFrom(d.st.DeepCopy())
	if d.st.Annotations == nil {
		d.st.Annotations = map[string]string{}
	}
	d.st.Annotations[v1alpha1.AnnotationRotateRequestedAt] = requested
	if err := d.c.Patch(d.ctx, d.st, patch); err != nil {
		return err
	}
	var newSecret string
	if err := d.waitFor("the rotated secret in the Secret", func() bool {
		_, s, err := d.credential()
		newSecret = s
		return err == nil && s != "" && s != d.secret
	}); err != nil {
		return err
	}
	if err := d.waitFor("the ServiceToken to record the rotation", func() bool {
		_ = d.c.Get(d.ctx, client.ObjectKeyFromObject(d.st), d.st)
		return d.st.Status.LastHandledRotateRequest == requested && meta.IsStatusConditionTrue(d.st.Status.Conditions, v1alpha1.ConditionReady)
	}); err != nil {
		return err
	}
	id, _, err := d.credential()
	if err != nil {
		return err
	}
	d.printf("    The Secret now holds a new secret %s (client ID unchanged: %t)\n", mask(newSecret), id == d.clientID)
	for _, c := range []struct{ label, secret string }{{"new", newSecret}, {"old", d.secret}} {
		code, body, err := d.verify(c.secret)
		if err != nil {
			return err
		}
		d.printf("    %s secret %s -> HTTP %d %s\n", c.label, mask(c.secret), code, body)
		if code != http.StatusOK {
			return fmt.Errorf("the %s secret does not pass Access during the grace period (HTTP %d)", c.label, code)
		}
	}
	d.printf("    Both pass: the old secret keeps working until %s (grace period %s), so nothing using it breaks.\n",
		clock(d.st.Status.PreviousSecretExpiresAt), gracePeriod)
	d.printf("    The operator rotates it again by itself at %s (%s before expiry at %s).\n",
		clock(d.st.Status.RenewalTime), renewBefore, clock(d.st.Status.ExpiresAt))
	d.secret = newSecret
	return nil
}

// tryIt tells how to look around while the demo runs.
func (d *demo) tryIt() {
	kc := d.cp.Kubeconfig
	d.printf("\nThe demo keeps running. Point kubectl at it:\n")
	d.printf("    export KUBECONFIG=%s\n", kc)
	d.printf("    kubectl --kubeconfig %s get servicetokens -A\n", kc)
	d.printf("    kubectl --kubeconfig %s get cloudflareaccounts,secrets -n %s\n", kc, namespace)
	d.printf("    kubectl --kubeconfig %s describe servicetoken %s -n %s\n", kc, d.st.Name, namespace)
	d.printf("    kubectl --kubeconfig %s annotate servicetoken %s -n %s --overwrite %s=$(date -u +%%FT%%TZ)\n",
		kc, d.st.Name, namespace, v1alpha1.AnnotationRotateRequestedAt)
	d.printf("Check a credential:   %s\n", d.curl(d.secret))
	d.printf("Logs: %s, %s\n", d.mgr.LogPath, d.sim.LogPath)
	d.printf("\nPress Ctrl-C to stop and clean up.\n")
}

// cleanup stops everything in reverse order and removes a temporary dir.
func (d *demo) cleanup() {
	if d.mgr != nil {
		d.mgr.Stop()
	}
	if d.sim != nil {
		d.sim.Stop()
	}
	if d.cp != nil {
		d.cp.Stop()
	}
	if d.dir != "" && !d.keep {
		_ = os.RemoveAll(d.dir)
	}
	if d.cp != nil {
		d.printf("Stopped and cleaned up.\n")
	}
}

// waitFor polls cond until it holds, the manager dies, or the time is up.
func (d *demo) waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		if cond() {
			return nil
		}
		if d.mgr.Exited() {
			return fmt.Errorf("the manager exited while waiting for %s:\n%s", what, tail(d.mgr.Output(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s; last manager log lines:\n%s", waitTimeout, what, tail(d.mgr.Output(), 20))
		}
		select {
		case <-d.ctx.Done():
			return d.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *demo) credential() (id, secret string, err error) {
	s := &corev1.Secret{}
	if err := d.c.Get(d.ctx, client.ObjectKey{Namespace: namespace, Name: d.st.Spec.Secret.Name}, s); err != nil {
		return "", "", err
	}
	return string(s.Data[d.clientIDKey]), string(s.Data[d.keyName]), nil
}

// verify is what the printed curl command does.
func (d *demo) verify(secret string) (int, string, error) {
	req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, d.sim.URL+"/_sim/verify", nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("CF-Access-Client-Id", d.clientID)
	req.Header.Set("CF-Access-Client-Secret", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	var compact bytes.Buffer
	if json.Compact(&compact, b) == nil {
		b = compact.Bytes()
	}
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// curl is the command equivalent to verify, with the secret masked.
func (d *demo) curl(secret string) string {
	return fmt.Sprintf("curl -s -H 'CF-Access-Client-Id: %s' -H 'CF-Access-Client-Secret: %s' %s/_sim/verify",
		d.clientID, mask(secret), d.sim.URL)
}

// mask shows a secret's prefix (cfast_) and last four characters only.
func mask(s string) string {
	if len(s) < 12 {
		return "****"
	}
	prefix := ""
	if i := strings.IndexByte(s, '_'); i >= 0 && i <= 8 {
		prefix = s[:i+1]
	}
	return prefix + "****…" + s[len(s)-4:]
}

func readSample(file string, into any) error {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "samples", file))
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		return fmt.Errorf("config/samples/%s: %w", file, err)
	}
	return nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

func clock(t *metav1.Time) string {
	if t == nil {
		return "(unknown)"
	}
	return t.Local().Format("15:04:05")
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
