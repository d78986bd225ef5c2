package chaos

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

const (
	systemNS       = "chaos-system"
	clusterAccount = "shared"
	nsAccount      = "acct"
	accountA       = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1" // CloudflareAccount in every namespace
	accountB       = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2" // the ClusterCloudflareAccount
	zoneA          = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaf1"
	zoneB          = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbf2"
	leaseMessage   = "cquired lease" // "Successfully acquired lease" (client-go, via logr)
)

var namespaces = []string{"chaos-a", "chaos-b", "chaos-c"}

// tracked is a ServiceToken the suite created and has not deleted.
type tracked struct {
	ns, name string
	names    []string // every tokenName it was given (to attribute tokens of interrupted creates)
	orphan   bool     // deletionPolicy Orphan
	zone     bool
	disabled bool
}

func (t *tracked) key() string { return t.ns + "/" + t.name }

// orphanSet is what ServiceTokens deleted with policy Orphan left behind.
type orphanSet struct {
	ids   map[string]bool
	names map[string]bool
	// markers: the "#<uid>" name suffixes of those ServiceTokens, which every
	// token they created carries until it is renamed to a spec.tokenName.
	markers map[string]bool
}

// has reports whether a token was left behind by an orphaned ServiceToken.
func (o orphanSet) has(id, name string) bool {
	if o.ids[id] || o.names[name] {
		return true
	}
	if i := strings.LastIndex(name, "#"); i >= 0 {
		return o.markers[name[i:]]
	}
	return false
}

func (r *run) randomHex(n int) string {
	b := make([]byte, n)
	r.rndMu.Lock()
	for i := range b {
		b[i] = byte(r.rnd.Uint32())
	}
	r.rndMu.Unlock()
	return hex.EncodeToString(b)
}

// apiTokens are the Cloudflare API credentials: one per namespace account
// (account A) and one for the ClusterCloudflareAccount (account B).
func (r *run) setup(ctx context.Context) error {
	r.cfg.Logf("chaos: building binaries and starting the control plane in %s", r.dir)
	var cfsim string
	var err error
	if r.managerBin, cfsim, err = harness.Binaries(r.dir); err != nil {
		return err
	}
	if r.cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{GarbageCollector: true, Dir: r.dir}); err != nil {
		return err
	}
	creds := map[string]string{}
	var list []string
	for _, ns := range append(append([]string{}, namespaces...), systemNS) {
		creds[ns] = "chaosapi" + r.randomHex(20)
		list = append(list, creds[ns])
	}
	r.apiTokens = list
	if r.sim, err = harness.StartSim(cfsim, r.dir, "--accounts="+accountA+","+accountB, "--zones="+zoneA+","+zoneB,
		"--api-tokens="+strings.Join(append(list, r.secondAPIToken()...), ","), "--seed="+strconv.FormatUint(r.cfg.Seed, 10),
		"--latency-spike="+r.cfg.LatencySpike.String()); err != nil {
		return err
	}
	r.orphans = orphanSet{ids: map[string]bool{}, names: map[string]bool{}, markers: map[string]bool{}}
	c := r.cp.Client
	for _, ns := range append(append([]string{}, namespaces...), systemNS) {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"chaos": "yes"}}}); err != nil {
			return err
		}
	}
	// Namespace accounts (account A), each with its own credentials.
	for _, ns := range namespaces {
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cf-api", Labels: credentialsLabel},
			StringData: map[string]string{"apiToken": creds[ns]}}); err != nil {
			return err
		}
		if err := c.Create(ctx, &v1alpha1.CloudflareAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: nsAccount},
			Spec: v1alpha1.CloudflareAccountSpec{AccountSettings: v1alpha1.AccountSettings{AccountID: accountA, APIURL: r.sim.APIURL()},
				CredentialsRef: v1alpha1.CredentialsReference{Name: "cf-api"}}}); err != nil {
			return err
		}
	}
	// The cluster account (account B), allowed in the chaos namespaces.
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: systemNS, Name: "cf-shared", Labels: credentialsLabel},
		StringData: map[string]string{"token": creds[systemNS]}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &v1alpha1.ClusterCloudflareAccount{ObjectMeta: metav1.ObjectMeta{Name: clusterAccount},
		Spec: v1alpha1.ClusterCloudflareAccountSpec{AccountSettings: v1alpha1.AccountSettings{AccountID: accountB, APIURL: r.sim.APIURL()},
			CredentialsRef: v1alpha1.ClusterCredentialsReference{Name: "cf-shared", Namespace: systemNS,
				CredentialsKeys: v1alpha1.CredentialsKeys{APITokenKey: "token"}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"chaos": "yes"}}}}); err != nil {
		return err
	}
	for i := range r.managers {
		if r.metricPorts[i], err = harness.FreePort(); err != nil {
			return err
		}
		if err := r.startManager(i); err != nil {
			return err
		}
	}
	r.cfg.Logf("chaos: creating %d ServiceTokens", r.cfg.Tokens)
	for range r.cfg.Tokens {
		if err := r.createToken(ctx); err != nil {
			return err
		}
	}
	// Start from a working state: every token Ready before the chaos begins.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ready, total, err := r.readyCount(ctx)
		if err == nil && ready == total {
			r.cfg.Logf("chaos: %d ServiceTokens Ready", total)
			return r.setupSecond(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d ServiceTokens became Ready before the chaos started (err %v)", ready, total, err)
		}
		time.Sleep(2 * time.Second)
	}
}

// credentialsLabel opts a Secret in to its use as account credentials.
var credentialsLabel = map[string]string{v1alpha1.LabelCredentials: "true"}

func (r *run) startManager(i int) error {
	p, err := harness.StartManager(r.managerBin, r.cp.Kubeconfig, r.dir, fmt.Sprintf("manager-%d", i), harness.AllowFlag(r.sim),
		"--cluster-name="+firstCluster, "--leader-elect", "--leader-election-namespace="+systemNS, "--drift-check-period="+r.cfg.DriftPeriod.String(),
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(r.metricPorts[i]), "--metrics-secure=false",
		"--zap-log-level=debug") // the limiter's state when an object waits for it
	if err != nil {
		return err
	}
	r.managers[i] = p
	return nil
}

// spec builds the i-th ServiceToken: a deterministic mix of account kinds,
// scopes, durations, renewal actions, routine rotation and deletion policies.
func (r *run) spec(i int) (*v1alpha1.ServiceToken, *tracked) {
	ns := namespaces[i%len(namespaces)]
	t := &tracked{ns: ns, name: fmt.Sprintf("st-%04d", i)}
	st := &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: t.name}}
	s := &st.Spec
	s.AccountRef = v1alpha1.AccountReference{Name: nsAccount}
	zone := zoneA
	if i%2 == 1 {
		s.AccountRef = v1alpha1.AccountReference{Kind: v1alpha1.KindClusterCloudflareAcc, Name: clusterAccount}
		zone = zoneB
	}
	if i%5 == 0 {
		s.ZoneID, t.zone = zone, true
	}
	s.Duration = []string{"2m", "3m", "4m", "6m"}[r.intn(4)]
	action := v1alpha1.RenewalRefresh
	if (i/2)%2 == 0 {
		action = v1alpha1.RenewalRotate
	}
	s.Renewal = &v1alpha1.Renewal{Action: action}
	s.Rotation = &v1alpha1.Rotation{GracePeriod: []string{"0s", "20s", "45s"}[r.intn(3)]}
	if i%7 == 0 {
		s.Rotation.Every = []string{"1m", "2m"}[r.intn(2)]
	}
	if i%4 == 3 {
		s.DeletionPolicy, t.orphan = v1alpha1.DeletionOrphan, true
	} else if i%8 == 0 {
		s.DeletionPolicy = v1alpha1.DeletionDelete
	}
	if i%6 == 0 {
		s.Secret = &v1alpha1.SecretTemplate{Keys: &v1alpha1.SecretKeys{ClientID: "CF_ACCESS_CLIENT_ID", ClientSecret: "CF_ACCESS_CLIENT_SECRET"}}
	}
	if i%9 == 0 {
		s.TokenName = fmt.Sprintf("chaos %s %s ☃ custom", ns, t.name)
	}
	eff, _ := st.EffectiveIn(firstCluster)
	t.names = []string{eff.TokenName}
	return st, t
}

func (r *run) createToken(ctx context.Context) error {
	r.stMu.Lock()
	i := r.nextID
	r.nextID++
	r.stMu.Unlock()
	st, t := r.spec(i)
	if err := r.cp.Client.Create(ctx, st); err != nil {
		// An error can hide a create the API server made (a timeout while it
		// restarts): such a ServiceToken is live and must be tracked.
		if !r.exists(ctx, st) {
			return err
		}
	}
	r.stMu.Lock()
	r.sts[t.key()] = t
	r.stMu.Unlock()
	r.count("create")
	return nil
}

// exists reports whether obj exists, asking again for a while when the API
// server does not answer (it may be restarting).
func (r *run) exists(ctx context.Context, obj client.Object) bool {
	found := false
	_ = harness.WaitFor(60*time.Second, func() bool {
		err := r.cp.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object))
		found = err == nil
		return err == nil || apierrors.IsNotFound(err) || ctx.Err() != nil
	})
	return found
}
