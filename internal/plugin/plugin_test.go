package plugin

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
)

// One API server for the package: starting one takes seconds. Each test
// works in namespaces of its own.
var (
	envOnce sync.Once
	envErr  error
	apiEnv  *testenv.Environment
	k8s     client.Client
	testCtx = context.Background()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if apiEnv != nil {
		_ = apiEnv.Stop()
	}
	os.Exit(code)
}

// cluster starts the API server on first use, or skips the test without one
// (fails in CI).
func cluster(t *testing.T) {
	t.Helper()
	envOnce.Do(func() {
		apiEnv, envErr = testenv.Start()
		if envErr == nil {
			k8s, envErr = client.New(apiEnv.Config, client.Options{Scheme: testenv.Scheme()})
		}
	})
	if envErr != nil {
		if testenv.InCI() {
			t.Fatal(envErr)
		}
		t.Skip("API server not available: " + envErr.Error())
	}
}

// kubeconfig writes a kubeconfig for the test API server whose current
// context has the given namespace ("" for none).
func kubeconfig(t *testing.T, namespace string) string {
	t.Helper()
	cfg := apiEnv.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: namespace}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs the plugin with the given kubeconfig and clock.
func run(t *testing.T, kubeconfigPath string, clk clock.WithTicker, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCommand(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, clk)
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfigPath}, args...))
	err = cmd.ExecuteContext(testCtx)
	return out.String(), errOut.String(), err
}

func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plugin-" + rand.String(6)}}
	if err := k8s.Create(testCtx, ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// token creates a ServiceToken; mutate may set labels and spec fields.
func token(t *testing.T, ns, name string, mutate func(*v1alpha1.ServiceToken)) *v1alpha1.ServiceToken {
	t.Helper()
	st := &v1alpha1.ServiceToken{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.ServiceTokenSpec{AccountRef: v1alpha1.AccountReference{Name: "example"}},
	}
	if mutate != nil {
		mutate(st)
	}
	if err := k8s.Create(testCtx, st); err != nil {
		t.Fatal(err)
	}
	return st
}

// setStatus writes a status as the operator would: fill sets its fields,
// ready (if not nil) the Ready condition observed at generation gen.
func setStatus(t *testing.T, st *v1alpha1.ServiceToken, ready *metav1.Condition, gen int64, fill func(*v1alpha1.ServiceTokenStatus)) {
	t.Helper()
	if err := writeStatus(st, ready, gen, fill); err != nil {
		t.Fatal(err)
	}
}

// writeStatus is setStatus for goroutines other than the test's.
func writeStatus(st *v1alpha1.ServiceToken, ready *metav1.Condition, gen int64, fill func(*v1alpha1.ServiceTokenStatus)) error {
	if err := k8s.Get(testCtx, client.ObjectKeyFromObject(st), st); err != nil {
		return err
	}
	if fill != nil {
		fill(&st.Status)
	}
	if ready != nil {
		c := *ready
		c.Type, c.ObservedGeneration = v1alpha1.ConditionReady, gen
		meta.SetStatusCondition(&st.Status.Conditions, c)
	}
	return k8s.Status().Update(testCtx, st)
}

func readyCond() *metav1.Condition {
	return &metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReady, Message: "token ok"}
}

func failedCond(reason, msg string) *metav1.Condition {
	return &metav1.Condition{Status: metav1.ConditionFalse, Reason: reason, Message: msg}
}

func get(t *testing.T, ns, name string) *v1alpha1.ServiceToken {
	t.Helper()
	var st v1alpha1.ServiceToken
	if err := k8s.Get(testCtx, client.ObjectKey{Namespace: ns, Name: name}, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func at(t time.Time) *metav1.Time { mt := metav1.NewTime(t); return &mt }
