package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare/sim"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

// The cluster names the managers run with (--cluster-name).
const (
	firstCluster  = "first"
	secondCluster = "second"
)

// foreignTouch is the invariant of issue 13: no manager writes to a token
// another cluster's ServiceTokens own.
const foreignTouch = "token of another owner touched"

// secondCluster is another cluster sharing Cloudflare account A with the
// first: its own control plane and one manager (no leader election, no
// kills, no churn), with its own API token, and ServiceTokens whose
// namespaces and names are those of some of the first cluster's account-A
// ServiceTokens. Only the simulator's faults reach it.
type secondClusterRun struct {
	cp       *harness.ControlPlane
	mgr      *harness.Process
	apiToken string

	mu    sync.Mutex
	owned map[string]bool // every token ID its ServiceTokens' status ever named
}

// secondAPIToken is drawn before the simulator starts, which must accept it.
func (r *run) secondAPIToken() []string {
	if r.cfg.SecondTokens <= 0 {
		return nil
	}
	r.second = &secondClusterRun{apiToken: "chaosapi2nd" + r.randomHex(20), owned: map[string]bool{}}
	return []string{r.second.apiToken}
}

// setupSecond starts the second cluster and waits until its ServiceTokens
// are Ready.
func (r *run) setupSecond(ctx context.Context) error {
	s := r.second
	if s == nil {
		return nil
	}
	dir := filepath.Join(r.dir, secondCluster)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var err error
	if s.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Dir: dir}); err != nil {
		return fmt.Errorf("second cluster: %w", err)
	}
	c := s.cp.Client
	for _, ns := range namespaces {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf-api", Labels: credentialsLabel},
			StringData: map[string]string{"apiToken": s.apiToken}}); err != nil {
			return err
		}
		if err := c.Create(ctx, &v1alpha1.CloudflareAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: nsAccount},
			Spec: v1alpha1.CloudflareAccountSpec{AccountSettings: v1alpha1.AccountSettings{AccountID: accountA, APIURL: r.sim.APIURL()},
				CredentialsRef: v1alpha1.CredentialsReference{Name: "cf-api"}}}); err != nil {
			return err
		}
	}
	// In r.dir, so the leak check reads its log with the others.
	if s.mgr, err = harness.StartManager(r.managerBin, s.cp.Kubeconfig, r.dir, "manager-"+secondCluster, harness.AllowFlag(r.sim),
		"--cluster-name="+secondCluster, "--leader-elect=false", "--drift-check-period="+r.cfg.DriftPeriod.String()); err != nil {
		return err
	}
	for j := range r.cfg.SecondTokens {
		if err := c.Create(ctx, r.secondSpec(j)); err != nil {
			return err
		}
	}
	r.cfg.Logf("chaos: second cluster: %d ServiceTokens with the first cluster's names in account A", r.cfg.SecondTokens)
	return harness.WaitFor(3*time.Minute, func() bool {
		list := &v1alpha1.ServiceTokenList{}
		if c.List(ctx, list) != nil {
			return false
		}
		for _, st := range list.Items {
			if !meta.IsStatusConditionTrue(st.Status.Conditions, v1alpha1.ConditionReady) {
				return false
			}
		}
		return len(list.Items) == r.cfg.SecondTokens
	})
}

// secondSpec is the j-th ServiceToken of the second cluster: the namespace
// and name of the first cluster's ServiceToken 2j (an account-A one), a
// default token name, and short durations so it renews (writes) during the
// run.
func (r *run) secondSpec(j int) *v1alpha1.ServiceToken {
	i := 2 * j
	st := &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: namespaces[i%len(namespaces)], Name: fmt.Sprintf("st-%04d", i)}}
	st.Spec.AccountRef = v1alpha1.AccountReference{Name: nsAccount}
	st.Spec.Duration = []string{"2m", "3m", "4m"}[j%3]
	action := v1alpha1.RenewalRefresh
	if j%2 == 1 {
		action = v1alpha1.RenewalRotate
	}
	st.Spec.Renewal = &v1alpha1.Renewal{Action: action}
	st.Spec.Rotation = &v1alpha1.Rotation{GracePeriod: "20s"}
	return st
}

// pollSecond records the token IDs the second cluster's ServiceTokens hold,
// every two seconds until ctx ends: tokens it replaced are its own too.
func (r *run) pollSecond(ctx context.Context) {
	if r.second == nil {
		return
	}
	for {
		_, _ = r.secondList(ctx)
		if !sleepCtx(ctx, 2*time.Second) {
			return
		}
	}
}

// secondList lists the second cluster's ServiceTokens and records their
// token IDs as its own.
func (r *run) secondList(ctx context.Context) (*v1alpha1.ServiceTokenList, error) {
	s := r.second
	list := &v1alpha1.ServiceTokenList{}
	if err := s.cp.Client.List(ctx, list); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range list.Items {
		for _, id := range []string{st.Status.TokenID, st.Status.PreviousTokenID} {
			if id != "" {
				s.owned[id] = true
			}
		}
	}
	return list, nil
}

// evaluateSecond checks the second cluster's end state: every ServiceToken
// Ready, its Secret verifying, no second token with its marker. It returns
// the tokens it accounts for, which the first cluster's checks leave alone.
func (r *run) evaluateSecond(ctx context.Context, chk *check, tokens []harness.SimToken) (map[string]bool, error) {
	accounted := map[string]bool{}
	if r.second == nil {
		return accounted, nil
	}
	list, err := r.secondList(ctx)
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		st := &list.Items[i]
		key := secondCluster + ":" + st.Namespace + "/" + st.Name
		ready := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue || ready.ObservedGeneration != st.Generation {
			chk.add("servicetoken not Ready", "%s: Ready is not True for generation %d", key, st.Generation)
		}
		accounted[st.Status.TokenID], accounted[st.Status.PreviousTokenID] = true, true
		for _, tk := range tokens {
			if strings.HasSuffix(tk.Name, v1alpha1.OwnerMarker(st.UID)) && tk.ID != st.Status.TokenID && tk.ID != st.Status.PreviousTokenID {
				accounted[tk.ID] = true
				chk.add("duplicate token", "%s: token %s carries its marker but is not its token", key, tk.ID)
			}
		}
		eff, err := st.EffectiveIn(secondCluster)
		if err != nil {
			chk.add("servicetoken not Ready", "%s: invalid spec %v", key, err)
			continue
		}
		s := &corev1.Secret{}
		if err := r.second.cp.Client.Get(ctx, client.ObjectKey{Namespace: st.Namespace, Name: eff.SecretName}, s); err != nil {
			chk.add("secret missing", "%s: Secret %s: %v", key, eff.SecretName, err)
			continue
		}
		ok, err := r.sim.Verify(string(s.Data[eff.ClientIDKey]), string(s.Data[eff.ClientSecretKey]))
		if err != nil {
			return nil, err
		}
		if !ok {
			chk.add("secret does not verify", "%s: Secret %s does not hold a credential Cloudflare accepts", key, s.Name)
		}
	}
	if n := len(list.Items); n != r.cfg.SecondTokens {
		chk.add("servicetoken lost", "%s: %d ServiceTokens, want %d", secondCluster, n, r.cfg.SecondTokens)
	}
	delete(accounted, "")
	return accounted, nil
}

// checkForeignTouches reads the simulator's request log and counts writes
// to another owner's tokens (foreignWrites).
func (r *run) checkForeignTouches(requests int) error {
	if r.second == nil {
		return nil
	}
	var log []sim.Request
	if err := r.simGet("/_sim/requests", &log); err != nil {
		return err
	}
	if len(log) < requests {
		// The check would be incomplete: say so rather than pass.
		r.res.Violations[foreignTouch]++
		r.res.ViolationDetails = append(r.res.ViolationDetails,
			fmt.Sprintf("%s: the simulator's request log holds %d of %d requests; raise its limit", foreignTouch, len(log), requests))
	}
	first := map[string]bool{}
	for _, t := range r.apiTokens {
		first[sim.CredentialID(t)] = true
	}
	r.second.mu.Lock()
	owned := make(map[string]bool, len(r.second.owned))
	for id := range r.second.owned {
		owned[id] = true
	}
	r.second.mu.Unlock()
	touches, written := foreignWrites(log, sim.CredentialID(r.second.apiToken), first, owned)
	r.res.SecondClusterWrites = written
	r.res.Violations[foreignTouch] += len(touches)
	for _, d := range touches[:min(len(touches), 50)] {
		r.res.ViolationDetails = append(r.res.ViolationDetails, foreignTouch+": "+d)
	}
	return nil
}

// foreignWrites finds, in a request log, the writes to a token ID (update,
// rotate, refresh, delete) made by one cluster on a token of the other:
// the second cluster's credential on a token it does not own, or a first
// cluster's credential on one it does. The second cluster owns the tokens
// in owned (its ServiceTokens' status over time) and those its credential
// created; every other token was created by someone else, in the log (all
// the suite's tokens are made through the API). An ID no token ever had is
// nobody's: the account controller's write probe refreshes the nil UUID.
// Attempts count, whatever their answer: an operator must not even try.
// written is the number of writes the second cluster made to its own tokens
// (the check had something to look at).
func foreignWrites(log []sim.Request, second string, first, owned map[string]bool) (touches []string, written int) {
	mine := make(map[string]bool, len(owned))
	for id := range owned {
		mine[id] = true
	}
	others := map[string]bool{}
	for _, q := range log {
		switch {
		case q.CreatedTokenID == "":
		case q.Credential == second:
			mine[q.CreatedTokenID] = true
		default:
			others[q.CreatedTokenID] = true
		}
	}
	for _, q := range log {
		id := pathTokenID(q.Path)
		if id == "" || (q.Op != sim.OpUpdate && q.Op != sim.OpRotate && q.Op != sim.OpRefresh && q.Op != sim.OpDelete) {
			continue
		}
		switch {
		case q.Credential == second && mine[id]:
			written++
		case q.Credential == second && others[id]:
			touches = append(touches, fmt.Sprintf("%s %s of token %s by the %s cluster (not its token), status %d",
				q.Time.Format(time.RFC3339), q.Op, id, secondCluster, q.Status))
		case first[q.Credential] && mine[id]:
			touches = append(touches, fmt.Sprintf("%s %s of token %s by the %s cluster (a %s cluster token), status %d",
				q.Time.Format(time.RFC3339), q.Op, id, firstCluster, secondCluster, q.Status))
		}
	}
	return touches, written
}

// pathTokenID is the token ID in an API path
// (/client/v4/{accounts|zones}/{id}/access/service_tokens/{token}[/…]), or "".
func pathTokenID(path string) string {
	rest, ok := strings.CutPrefix(path, sim.APIPrefix+"/")
	if !ok {
		return ""
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 5 {
		return ""
	}
	return segs[4]
}

func (s *secondClusterRun) stop() {
	if s.mgr != nil {
		s.mgr.Stop()
	}
	if s.cp != nil {
		s.cp.Stop()
	}
}
