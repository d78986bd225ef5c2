package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/test/harness"
)

// cluster is one control plane with the manager binary running in it, named
// with --cluster-name, against the shared simulator.
type cluster struct {
	name string
	c    client.Client
	mgr  *harness.Process
}

const (
	shopNamespace = "shop"
	accountID     = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
	clustersDrift = 2 * time.Second
)

func startCluster(t *testing.T, name, manager string, sim *harness.Sim) *cluster {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cp, err := harness.StartControlPlane(harness.ControlPlaneOptions{GarbageCollector: true, Dir: dir})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(cp.Stop)
	c := cp.Client
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shopNamespace}})).To(Succeed())
	g.Expect(c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: shopNamespace, Name: "cloudflare-api",
			Labels: map[string]string{v1alpha1.LabelCredentials: "true"}},
		StringData: map[string]string{v1alpha1.DefaultAPITokenKey: apiToken},
	})).To(Succeed())
	g.Expect(c.Create(ctx, &v1alpha1.CloudflareAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: shopNamespace, Name: "cf"},
		Spec: v1alpha1.CloudflareAccountSpec{
			AccountSettings: v1alpha1.AccountSettings{AccountID: accountID, APIURL: sim.APIURL()},
			CredentialsRef:  v1alpha1.CredentialsReference{Name: "cloudflare-api"},
		},
	})).To(Succeed())
	mgr, err := harness.StartManager(manager, cp.Kubeconfig, dir, "manager-"+name, "--cluster-name="+name,
		"--leader-elect=false", "--drift-check-period="+clustersDrift.String(), harness.AllowFlag(sim))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(mgr.Stop)
	return &cluster{name: name, c: c, mgr: mgr}
}

func (k *cluster) create(t *testing.T, name string, mutate ...func(*v1alpha1.ServiceToken)) {
	t.Helper()
	st := &v1alpha1.ServiceToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: shopNamespace, Name: name},
		Spec:       v1alpha1.ServiceTokenSpec{AccountRef: v1alpha1.AccountReference{Name: "cf"}, Duration: "720h"},
	}
	for _, m := range mutate {
		m(st)
	}
	if err := k.c.Create(context.Background(), st); err != nil {
		t.Fatalf("%s: creating ServiceToken %s: %v", k.name, name, err)
	}
}

func (k *cluster) get(t *testing.T, name string) *v1alpha1.ServiceToken {
	t.Helper()
	st := &v1alpha1.ServiceToken{}
	if err := k.c.Get(context.Background(), client.ObjectKey{Namespace: shopNamespace, Name: name}, st); err != nil {
		t.Fatalf("%s: reading ServiceToken %s: %v", k.name, name, err)
	}
	return st
}

// waitReason waits for the ServiceToken's Ready condition to have reason.
func (k *cluster) waitReason(t *testing.T, name, reason string) *v1alpha1.ServiceToken {
	t.Helper()
	var st *v1alpha1.ServiceToken
	err := harness.WaitFor(waitTimeout, func() bool {
		st = k.get(t, name)
		c := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady)
		return c != nil && c.Reason == reason && c.ObservedGeneration == st.Generation
	})
	if err != nil {
		t.Fatalf("%s: %s never got Ready reason %s (status %+v); manager log:\n%s", k.name, name, reason, st.Status, k.mgr.Output())
	}
	return st
}

// credential is the client ID and secret in the ServiceToken's Secret.
// Callers compare them; they never print them.
func (k *cluster) credential(t *testing.T, secret string) (id, value string) {
	t.Helper()
	s := &corev1.Secret{}
	if err := k.c.Get(context.Background(), client.ObjectKey{Namespace: shopNamespace, Name: secret}, s); err != nil {
		t.Fatalf("%s: reading Secret %s: %v", k.name, secret, err)
	}
	return string(s.Data[v1alpha1.DefaultClientIDKey]), string(s.Data[v1alpha1.DefaultClientSecretKey])
}

// TestTwoClustersOneAccount runs the same manifests in two clusters against
// one Cloudflare account, as platform teams do: each cluster knows its own
// tokens by their UID marker and never touches the other's, a name both ask
// for goes to one of them, a rotation made in the dashboard is healed, and
// a token moves from one cluster to the other with deletionPolicy Orphan
// and the adopt-token-id annotation, keeping its ID and never failing the
// workload that holds its secret.
func TestTwoClustersOneAccount(t *testing.T) {
	requireControlPlane(t)
	g := NewWithT(t)
	ctx := context.Background()
	manager, cfsim := binaries(t)
	sim, err := harness.StartSim(cfsim, t.TempDir(), "--accounts="+accountID, "--api-tokens="+apiToken)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(sim.Stop)
	works := func(id, secret string) bool {
		ok, err := sim.Verify(id, secret)
		g.Expect(err).NotTo(HaveOccurred())
		return ok
	}
	east, west := startCluster(t, "east", manager, sim), startCluster(t, "west", manager, sim)

	// The same ServiceToken in both clusters: two tokens, each named by its cluster and UID.
	east.create(t, "api")
	west.create(t, "api")
	e := east.waitReason(t, "api", v1alpha1.ReasonReady)
	w := west.waitReason(t, "api", v1alpha1.ReasonReady)
	g.Expect(e.Status.TokenID).NotTo(Equal(w.Status.TokenID))
	g.Expect(e.Status.TokenName).To(Equal(v1alpha1.DefaultTokenName(shopNamespace, "api", "east", e.UID)))
	g.Expect(w.Status.TokenName).To(Equal(v1alpha1.DefaultTokenName(shopNamespace, "api", "west", w.UID)))
	westID, westSecret := west.credential(t, "api")
	g.Expect(works(westID, westSecret)).To(BeTrue())

	// An explicit name both clusters ask for: the first keeps it, the second
	// creates nothing and touches nothing.
	named := func(st *v1alpha1.ServiceToken) { st.Spec.TokenName = "shop shared" }
	east.create(t, "shared", named)
	east.waitReason(t, "shared", v1alpha1.ReasonReady)
	sharedID, sharedSecret := east.credential(t, "shared")
	west.create(t, "shared", named)
	west.waitReason(t, "shared", v1alpha1.ReasonTokenNameConflict)
	tokens, err := sim.Tokens()
	g.Expect(err).NotTo(HaveOccurred())
	count := 0
	for _, tk := range tokens {
		if tk.Name == "shop shared" {
			count++
		}
	}
	g.Expect(count).To(Equal(1), "one token has the shared name")

	// A rotation in the dashboard revokes east's secret; east heals it
	// within two drift periods. West's tokens are not touched.
	eastID, eastSecret := east.credential(t, "api")
	g.Expect(sim.RotateToken(e.Status.TokenID)).To(Succeed())
	g.Expect(works(eastID, eastSecret)).To(BeFalse())
	if err := harness.WaitFor(2*clustersDrift+3*time.Second, func() bool {
		id, secret := east.credential(t, "api")
		return works(id, secret)
	}); err != nil {
		t.Fatalf("east's Secret does not work again within two drift periods; status %+v; manager log:\n%s", east.get(t, "api").Status, east.mgr.Output())
	}

	// east releases its token (Orphan) and west adopts it.
	eastID, eastSecret = east.credential(t, "api")
	e = east.get(t, "api")
	patch := client.MergeFrom(e.DeepCopy())
	e.Spec.DeletionPolicy = v1alpha1.DeletionOrphan
	g.Expect(east.c.Patch(ctx, e, patch)).To(Succeed())
	east.waitReason(t, "api", v1alpha1.ReasonReady)
	g.Expect(east.c.Delete(ctx, e)).To(Succeed())
	g.Expect(harness.WaitFor(waitTimeout, func() bool {
		return apierrors.IsNotFound(east.c.Get(ctx, client.ObjectKeyFromObject(e), &v1alpha1.ServiceToken{}))
	})).To(Succeed())
	time.Sleep(2 * time.Second) // the garbage collector would have taken an owned Secret by now
	kept := &corev1.Secret{}
	g.Expect(east.c.Get(ctx, client.ObjectKey{Namespace: shopNamespace, Name: "api"}, kept)).To(Succeed(), "the Secret is kept")
	g.Expect(metav1.GetControllerOf(kept)).To(BeNil())

	west.create(t, "api-from-east", func(st *v1alpha1.ServiceToken) {
		st.Annotations = map[string]string{v1alpha1.AnnotationAdoptTokenID: e.Status.TokenID}
	})
	adopted := west.waitReason(t, "api-from-east", v1alpha1.ReasonReady)
	g.Expect(adopted.Status.TokenID).To(Equal(e.Status.TokenID), "the same token: Access policies naming it keep working")
	id, secret := west.credential(t, "api-from-east")
	g.Expect(works(id, secret)).To(BeTrue())
	g.Expect(works(eastID, eastSecret)).To(BeTrue(), "east's kept Secret works through the grace period")

	// Nothing of another owner was touched.
	g.Expect(works(westID, westSecret)).To(BeTrue(), "west's own token kept its secret")
	g.Expect(works(sharedID, sharedSecret)).To(BeTrue(), "the shared name's token kept its secret")
	g.Expect(west.get(t, "api").Status.TokenID).To(Equal(w.Status.TokenID))
}
