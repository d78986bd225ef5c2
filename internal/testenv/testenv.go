// Package testenv starts a real kube-apiserver and etcd (envtest) with the
// project's CRDs installed, for every test that needs an API server.
//
// The binaries come from KUBEBUILDER_ASSETS or from bin/k8s/<version>/, built
// by hack/setup-envtest.sh (make test does that first). When they are missing
// the caller is told how to get them; under CI=true that is a failure, never
// a silent skip.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// KubernetesVersion is the version hack/setup-envtest.sh builds.
const KubernetesVersion = "1.37.2"

// ErrNoBinaries means the control-plane binaries are not available.
var ErrNoBinaries = errors.New("envtest binaries not found")

// RepoRoot is the repository root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir returns the directory holding kube-apiserver and etcd.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "bin", "k8s", KubernetesVersion)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%w: no %s in %s; run 'make test' or 'hack/setup-envtest.sh' to build them", ErrNoBinaries, b, dir)
		}
	}
	return dir, nil
}

// InCI reports whether we run in CI, where missing binaries must fail.
func InCI() bool { return os.Getenv("CI") == "true" }

// Scheme has the built-in kinds and this project's API.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = v1alpha1.AddToScheme(s)
	return s
}

// Environment is a running envtest control plane.
type Environment struct {
	*envtest.Environment
	Config *rest.Config
}

// Start starts kube-apiserver and etcd with the CRDs from config/crd/bases.
func Start() (*Environment, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme(),
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	return &Environment{Environment: env, Config: cfg}, nil
}

// GVK returns the GroupVersionKind of one of this project's kinds.
func GVK(kind string) schema.GroupVersionKind { return v1alpha1.GroupVersion.WithKind(kind) }
