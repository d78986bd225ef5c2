package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

// soak runs churn, Cloudflare faults (alternating the general mix with
// stretches of refresh failures), leader kills, SIGTERM rollouts and one API
// server restart for cfg.Churn, then switches the faults off.
func (r *run) soak(parent context.Context) error {
	r.faults = &faultPlan{sim: r.sim}
	if err := r.faults.setPhase(r.mixFaults()); err != nil {
		return err
	}
	r.cfg.Logf("chaos: faults on (rate %v), churn, kills, rollouts for %s", r.cfg.FaultRate, r.cfg.Churn)
	ctx, cancel := context.WithTimeout(parent, r.cfg.Churn)
	defer cancel()
	var wg sync.WaitGroup
	var apiErr error
	for _, f := range []func(context.Context){r.churnLoop, r.killLoop, r.supervise, r.scrapeLoop, r.progressLoop,
		r.faultPhaseLoop, r.rolloutLoop} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	if r.cfg.RestartAPI {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleepCtx(ctx, r.cfg.Churn/2) {
				return
			}
			apiErr = r.restartAPIServer(parent)
		}()
	}
	wg.Wait()
	if apiErr != nil {
		return fmt.Errorf("restarting kube-apiserver: %w", apiErr)
	}
	if err := r.faults.off(); err != nil {
		return err
	}
	r.cfg.Logf("chaos: faults off")
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *run) progressLoop(ctx context.Context) {
	for sleepCtx(ctx, 30*time.Second) {
		r.resMu.Lock()
		kills, rollouts, exits, ops := r.res.Kills, r.res.SigtermRollouts, r.res.ManagerExits, 0
		for _, n := range r.res.Operations {
			ops += n
		}
		r.resMu.Unlock()
		r.cfg.Logf("chaos: %d churn operations, %d leader kills, %d rollouts, %d manager exits so far", ops, kills, rollouts, exits)
	}
}

// leader returns the replica that holds the lease (its current incarnation
// logged the acquisition), or -1. A replica being rolled out is shutting
// down: it is nobody's to kill or roll again.
func (r *run) leader() (int, *harness.Process) {
	r.mgrMu.Lock()
	defer r.mgrMu.Unlock()
	for i, m := range r.managers {
		if m != nil && !r.rollingOut[i] && !m.Exited() && strings.Contains(m.Output(), leaseMessage) {
			return i, m
		}
	}
	return -1, nil
}

// killLoop SIGKILLs the leader a random time after it took the lease, and
// starts the replica again at once (as a Deployment would).
func (r *run) killLoop(ctx context.Context) {
	for ctx.Err() == nil {
		i, p := r.leader()
		if p == nil {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		if !sleepCtx(ctx, r.between(r.cfg.KillMin, r.cfg.KillMax)) {
			return
		}
		r.mgrMu.Lock()
		if !r.paused && !r.rollingOut[i] && r.managers[i] == p && !p.Exited() {
			p.Kill()
			r.resMu.Lock()
			r.res.Kills++
			r.resMu.Unlock()
			if err := r.startManager(i); err != nil {
				r.cfg.Logf("chaos: restarting manager-%d: %v", i, err)
			}
		}
		r.mgrMu.Unlock()
	}
}

// supervise restarts a replica that exited on its own (for example when it
// lost the lease while the API server was down).
func (r *run) supervise(ctx context.Context) {
	for sleepCtx(ctx, 500*time.Millisecond) {
		r.mgrMu.Lock()
		if !r.paused {
			for i, m := range r.managers {
				if m.Exited() && !r.rollingOut[i] { // rollout restarts its own
					r.resMu.Lock()
					r.res.ManagerExits++
					r.resMu.Unlock()
					if err := r.startManager(i); err != nil {
						r.cfg.Logf("chaos: restarting manager-%d: %v", i, err)
					}
				}
			}
		}
		r.mgrMu.Unlock()
	}
	// After the soak, keep replicas running for convergence.
	r.mgrMu.Lock()
	for i, m := range r.managers {
		if m.Exited() && !r.rollingOut[i] {
			r.resMu.Lock()
			r.res.ManagerExits++
			r.resMu.Unlock()
			_ = r.startManager(i)
		}
	}
	r.mgrMu.Unlock()
}

func (r *run) scrapeLoop(ctx context.Context) {
	for sleepCtx(ctx, 15*time.Second) {
		r.scrapeMetrics()
	}
}

// scrapeMetrics keeps every /metrics answer of every replica for the leak check.
func (r *run) scrapeMetrics() {
	for _, port := range r.metricPorts {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		_ = resp.Body.Close()
		r.resMu.Lock()
		r.metricsText.Write(b)
		r.resMu.Unlock()
	}
}

// restartAPIServer stops kube-apiserver (SIGTERM) and starts it again with
// the same arguments, certificates and etcd.
func (r *run) restartAPIServer(ctx context.Context) error {
	r.mgrMu.Lock()
	r.paused = true
	r.mgrMu.Unlock()
	defer func() {
		r.mgrMu.Lock()
		r.paused = false
		r.mgrMu.Unlock()
	}()
	pid, args, err := childProcess("kube-apiserver")
	if err != nil {
		return err
	}
	r.cfg.Logf("chaos: restarting kube-apiserver")
	_ = syscall.Kill(pid, syscall.SIGTERM)
	// A graceful stop waits for long-running watches; a crash does not.
	if err := harness.WaitFor(5*time.Second, func() bool { return syscall.Kill(pid, 0) != nil || zombie(pid) }); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = harness.WaitFor(10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil || zombie(pid) })
	}
	time.Sleep(2 * time.Second) // down for a moment: watches break, leases cannot be renewed
	p, err := harness.Start(harness.ProcessOptions{Name: "kube-apiserver-restarted", Path: args[0], Args: args[1:], LogDir: r.dir})
	if err != nil {
		return err
	}
	r.apiProc = p
	if err := harness.WaitFor(90*time.Second, func() bool {
		return r.cp.Client.List(ctx, &corev1.NamespaceList{}, client.Limit(1)) == nil
	}); err != nil {
		return fmt.Errorf("kube-apiserver did not come back: %w", err)
	}
	r.resMu.Lock()
	r.res.APIRestarts++
	r.resMu.Unlock()
	r.cfg.Logf("chaos: kube-apiserver back")
	return nil
}

// childProcess finds a direct child of this process by command name.
func childProcess(name string) (int, []string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, err
	}
	me := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 || s[open+1:closing] != name {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != me || fields[0] == "Z" {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			return 0, nil, err
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		return pid, args, nil
	}
	return 0, nil, errors.New("no " + name + " child process found")
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}

// churnLoop changes things under the operator's feet.
func (r *run) churnLoop(ctx context.Context) {
	for sleepCtx(ctx, r.between(r.cfg.ChurnInterval/2, r.cfg.ChurnInterval*3/2)) {
		r.churnOnce(ctx)
	}
}

var churnWeights = []struct {
	op     string
	weight int
}{
	{"delete-servicetoken", 6}, {"rename-token", 7}, {"change-duration", 7}, {"toggle-enabled", 5},
	// A rotate request also labels the ServiceToken and annotates its Secret
	// while the rotation runs (editDuringRotation).
	{"rotate-request", 9}, {"refresh-request", 8}, {"delete-secret", 6}, {"edit-secret", 6},
	{"delete-token-in-cloudflare", 6}, {"rename-secret", 3},
}

// deleting reports whether the API server has started deleting st.
func (r *run) deleting(ctx context.Context, st *v1alpha1.ServiceToken) bool {
	cur := &v1alpha1.ServiceToken{}
	err := r.cp.Client.Get(ctx, client.ObjectKeyFromObject(st), cur)
	return apierrors.IsNotFound(err) || (err == nil && !cur.DeletionTimestamp.IsZero())
}

func (r *run) pick() *tracked {
	r.stMu.Lock()
	defer r.stMu.Unlock()
	if len(r.sts) == 0 {
		return nil
	}
	n := r.intn(len(r.sts))
	for _, t := range r.sts {
		if n == 0 {
			return t
		}
		n--
	}
	return nil
}

func (r *run) churnOnce(ctx context.Context) {
	r.stMu.Lock()
	live := len(r.sts)
	r.stMu.Unlock()
	if live < r.cfg.Tokens {
		if err := r.createToken(ctx); err != nil {
			r.churnError()
		}
		return
	}
	total := 0
	for _, w := range churnWeights {
		total += w.weight
	}
	n := r.intn(total)
	op := churnWeights[0].op
	for _, w := range churnWeights {
		if n < w.weight {
			op = w.op
			break
		}
		n -= w.weight
	}
	t := r.pick()
	if t == nil {
		return
	}
	if err := r.do(ctx, op, t); err != nil {
		r.churnError()
		return
	}
	r.count(op)
}

func (r *run) do(ctx context.Context, op string, t *tracked) error {
	c := r.cp.Client
	st := &v1alpha1.ServiceToken{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: t.name}, st); err != nil {
		return err
	}
	base := st.DeepCopy()
	patch := func() error { return c.Patch(ctx, st, client.MergeFrom(base)) }
	now := time.Now().UTC().Format(time.RFC3339Nano)
	switch op {
	case "delete-servicetoken":
		r.stMu.Lock()
		if t.orphan {
			for _, name := range t.names {
				r.orphans.names[name] = true
			}
			r.orphans.markers[v1alpha1.OwnerMarker(st.UID)] = true
			for _, id := range []string{st.Status.TokenID, st.Status.PreviousTokenID} {
				if id != "" {
					r.orphans.ids[id] = true
				}
			}
		}
		r.stMu.Unlock()
		r.cont.noteServiceTokenDeletion(st.UID, true)
		if err := c.Delete(ctx, st); err != nil && !apierrors.IsNotFound(err) {
			// The delete may have happened all the same (a timeout while the
			// API server restarts): then it is no longer ours to keep alive.
			if live := st.DeepCopy(); r.exists(ctx, live) && !r.deleting(ctx, live) {
				r.cont.noteServiceTokenDeletion(st.UID, false)
				return err
			}
		}
		r.stMu.Lock()
		delete(r.sts, t.key())
		r.stMu.Unlock()
		return nil
	case "rename-token":
		name := fmt.Sprintf("chaos-%s-%s-r%d", t.ns, t.name, len(t.names))
		r.stMu.Lock()
		t.names = append(t.names, name)
		r.stMu.Unlock()
		st.Spec.TokenName = name
		return patch()
	case "change-duration":
		st.Spec.Duration = []string{"2m", "3m", "4m", "5m", "6m"}[r.intn(5)]
		return patch()
	case "toggle-enabled":
		enabled := st.Spec.Enabled != nil && !*st.Spec.Enabled // flip
		st.Spec.Enabled = &enabled
		if err := patch(); err != nil {
			return err
		}
		r.stMu.Lock()
		t.disabled = !enabled
		r.stMu.Unlock()
		return nil
	case "rotate-request", "refresh-request":
		key := v1alpha1.AnnotationRotateRequestedAt
		if op == "refresh-request" {
			key = v1alpha1.AnnotationRefreshRequestedAt
		}
		if st.Annotations == nil {
			st.Annotations = map[string]string{}
		}
		st.Annotations[key] = now
		if err := patch(); err != nil {
			return err
		}
		if op == "rotate-request" {
			r.editDuringRotation(ctx, st)
		}
		return nil
	case "rename-secret":
		if st.Spec.Secret == nil {
			st.Spec.Secret = &v1alpha1.SecretTemplate{}
		}
		st.Spec.Secret.Name = fmt.Sprintf("%s-moved-%d", t.name, r.intn(1000))
		return patch()
	case "delete-secret", "edit-secret":
		if st.Status.SecretName == "" {
			return errors.New("no Secret yet")
		}
		secret := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: st.Status.SecretName}, secret); err != nil {
			return err
		}
		r.cont.noteSecretLost(st.UID, time.Now())
		if op == "delete-secret" {
			return c.Delete(ctx, secret)
		}
		eff, err := st.Effective()
		if err != nil {
			return err
		}
		secretBase := secret.DeepCopy()
		if secret.Data == nil {
			secret.Data = map[string][]byte{}
		}
		secret.Data[eff.ClientSecretKey] = []byte("edited-by-chaos-" + now)
		return c.Patch(ctx, secret, client.MergeFrom(secretBase))
	case "delete-token-in-cloudflare":
		if st.Status.TokenID == "" {
			return errors.New("no token yet")
		}
		// Before deleting: the sampler may see its secrets fail at once.
		r.cont.noteChurnDeletion(st.Status.TokenID, st.Status.ClientID)
		return r.sim.DeleteToken(st.Status.TokenID)
	}
	return fmt.Errorf("unknown op %s", op)
}

// chaosEditKey is the label (on ServiceTokens) and annotation (on their
// Secrets) that editDuringRotation sets, as another tool would.
const chaosEditKey = "chaos.servicetoken.dev/edited"

// editDuringRotation changes what other tools own while the operator is
// rotating: a label on the ServiceToken and an annotation on its Secret,
// shortly after the rotation was requested. Both are merge patches of
// metadata only (never the Secret's data), as kubectl label/annotate or a
// reloader would send; the operator's writes must not undo them, nor be
// undone by them.
func (r *run) editDuringRotation(ctx context.Context, st *v1alpha1.ServiceToken) {
	if !sleepCtx(ctx, r.between(100*time.Millisecond, 600*time.Millisecond)) {
		return
	}
	c := r.cp.Client
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36) // a valid label value
	patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, chaosEditKey, stamp)))
	if err := c.Patch(ctx, &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: st.Namespace, Name: st.Name}}, patch); err != nil {
		r.churnError()
	} else {
		r.count("edit during rotation: label the ServiceToken")
	}
	if st.Status.SecretName == "" {
		return
	}
	patch = client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, chaosEditKey, stamp)))
	if err := c.Patch(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: st.Namespace, Name: st.Status.SecretName}}, patch); err != nil {
		r.churnError()
	} else {
		r.count("edit during rotation: annotate the Secret")
	}
}
