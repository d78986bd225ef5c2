package harness

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
)

// TestHarnessRunsTheRealBinaries checks the harness itself: the manager
// binary turns a ServiceToken into a Secret that verifies against cfsim, and
// kube-controller-manager garbage-collects the Secret after deletion.
func TestHarnessRunsTheRealBinaries(t *testing.T) {
	if _, err := testenv.AssetsDir(); err != nil && !testenv.InCI() {
		t.Skip(err)
	}
	g := NewWithT(t)
	dir := t.TempDir()
	manager, cfsim, err := Binaries(dir)
	g.Expect(err).NotTo(HaveOccurred())
	cp, err := StartControlPlane(ControlPlaneOptions{GarbageCollector: true, Dir: dir})
	g.Expect(err).NotTo(HaveOccurred())
	defer cp.Stop()
	const account, token = "0123456789abcdef0123456789abcdef", "harness-token"
	sim, err := StartSim(cfsim, dir, "--accounts="+account, "--api-tokens="+token)
	g.Expect(err).NotTo(HaveOccurred())
	defer sim.Stop()
	mgr, err := StartManager(manager, cp.Kubeconfig, dir, "manager", AllowFlag(sim))
	g.Expect(err).NotTo(HaveOccurred())
	defer mgr.Stop()

	ctx := context.Background()
	c := cp.Client
	g.Expect(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cf-api",
		Labels: map[string]string{v1alpha1.LabelCredentials: "true"}},
		StringData: map[string]string{"apiToken": token}})).To(Succeed())
	g.Expect(c.Create(ctx, &v1alpha1.CloudflareAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cf"},
		Spec: v1alpha1.CloudflareAccountSpec{AccountSettings: v1alpha1.AccountSettings{AccountID: account, APIURL: sim.APIURL()},
			CredentialsRef: v1alpha1.CredentialsReference{Name: "cf-api"}}})).To(Succeed())
	st := &v1alpha1.ServiceToken{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app"},
		Spec: v1alpha1.ServiceTokenSpec{AccountRef: v1alpha1.AccountReference{Name: "cf"}}}
	g.Expect(c.Create(ctx, st)).To(Succeed())

	g.Eventually(func() bool {
		_ = c.Get(ctx, client.ObjectKeyFromObject(st), st)
		return meta.IsStatusConditionTrue(st.Status.Conditions, v1alpha1.ConditionReady)
	}, 60*time.Second, 200*time.Millisecond).Should(BeTrue(), func() string { return mgr.Output() })
	secret := &corev1.Secret{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "app"}, secret)).To(Succeed())
	ok, err := sim.Verify(string(secret.Data["client_id"]), string(secret.Data["client_secret"]))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ok).To(BeTrue())

	g.Expect(c.Delete(ctx, st)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(secret), secret))
	}, 60*time.Second, 200*time.Millisecond).Should(BeTrue(), "kube-controller-manager garbage-collects the owned Secret")
	tokens, err := sim.Tokens()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(len(tokens)).To(BeZero(), "the token is deleted in Cloudflare") // a count: never print secrets
}
