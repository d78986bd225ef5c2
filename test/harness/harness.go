// Package harness runs the pieces of a real installation on one machine for
// end-to-end tests, benchmarks, the chaos suite and `make demo`: a
// kube-apiserver and etcd (optionally kube-controller-manager for garbage
// collection), the Cloudflare simulator (cmd/cfsim) and the manager binary
// (cmd/main.go) as separate processes.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
)

// Binaries builds the manager and cfsim (like `make build`) into dir.
func Binaries(dir string) (manager, cfsim string, err error) {
	root := testenv.RepoRoot()
	manager, cfsim = filepath.Join(dir, "manager"), filepath.Join(dir, "cfsim")
	for out, pkg := range map[string]string{manager: "./cmd", cfsim: "./cmd/cfsim"} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return manager, cfsim, nil
}

// ControlPlane is a running kube-apiserver + etcd with the project's CRDs.
type ControlPlane struct {
	Env        *testenv.Environment
	Config     *rest.Config
	Client     client.Client
	Kubeconfig string // path of an admin kubeconfig for separate processes
	Dir        string
	kcm        *Process
}

// ControlPlaneOptions configure StartControlPlane.
type ControlPlaneOptions struct {
	// GarbageCollector also runs kube-controller-manager with the garbage
	// collector, so owner references really delete dependents.
	GarbageCollector bool
	// RoleAggregation also runs kube-controller-manager with the
	// clusterrole-aggregation controller, so ClusterRoles labelled
	// aggregate-to-view/edit/admin add their rules to the built-in roles.
	RoleAggregation bool
	// Dir holds kubeconfigs and logs; a temporary directory when empty.
	Dir string
}

// StartControlPlane starts the API server and etcd and installs the CRDs.
func StartControlPlane(opts ControlPlaneOptions) (*ControlPlane, error) {
	dir := opts.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "servicetoken-harness-"); err != nil {
			return nil, err
		}
	}
	env, err := testenv.Start()
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Env: env, Config: env.Config, Dir: dir}
	fail := func(err error) (*ControlPlane, error) { cp.Stop(); return nil, err }
	user, err := env.AddUser(envtest.User{Name: "harness-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fail(err)
	}
	cp.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		return fail(err)
	}
	if cp.Client, err = client.New(env.Config, client.Options{Scheme: testenv.Scheme()}); err != nil {
		return fail(err)
	}
	var controllers []string
	if opts.GarbageCollector {
		controllers = append(controllers, "garbagecollector")
	}
	if opts.RoleAggregation {
		controllers = append(controllers, "clusterrole-aggregation")
	}
	if len(controllers) > 0 {
		if cp.kcm, err = cp.startControllerManager(controllers); err != nil {
			return fail(err)
		}
	}
	return cp, nil
}

// startControllerManager runs kube-controller-manager with only the named
// controllers.
func (cp *ControlPlane) startControllerManager(controllers []string) (*Process, error) {
	assets, err := testenv.AssetsDir()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kube-controller-manager not found in %s (hack/setup-envtest.sh builds it): %w", assets, err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	return Start(ProcessOptions{Name: "kube-controller-manager", Path: bin, LogDir: cp.Dir, Args: []string{
		"--kubeconfig=" + cp.Kubeconfig, "--authentication-kubeconfig=" + cp.Kubeconfig, "--authorization-kubeconfig=" + cp.Kubeconfig,
		"--controllers=" + strings.Join(controllers, ","), "--leader-elect=false", "--use-service-account-credentials=false",
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port), "--concurrent-gc-syncs=5",
	}})
}

// Stop stops everything the control plane started.
func (cp *ControlPlane) Stop() {
	if cp.kcm != nil {
		cp.kcm.Stop()
	}
	if cp.Env != nil {
		_ = cp.Env.Stop()
	}
}

// ProcessOptions describe a child process.
type ProcessOptions struct {
	Name   string
	Path   string
	Args   []string
	Env    []string
	LogDir string // stdout+stderr go to <LogDir>/<Name>.log (and are kept in memory)
}

// Process is a running child process with its output captured.
type Process struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	mu      sync.Mutex
	out     bytes.Buffer
	done    chan struct{}
	exitErr error
}

// Start starts a child process.
func Start(o ProcessOptions) (*Process, error) {
	p := &Process{Name: o.Name, done: make(chan struct{})}
	cmd := exec.Command(o.Path, o.Args...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var sinks []io.Writer
	sinks = append(sinks, &lockedWriter{p: p})
	if o.LogDir != "" {
		p.LogPath = filepath.Join(o.LogDir, o.Name+".log")
		f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, f)
	}
	w := io.MultiWriter(sinks...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", o.Name, err)
	}
	p.cmd = cmd
	go func() { p.exitErr = cmd.Wait(); close(p.done) }()
	return p, nil
}

type lockedWriter struct{ p *Process }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// Output returns everything the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to shut down (SIGTERM), then kills it after 10s.
func (p *Process) Stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// PeakRSSBytes is the process's peak resident set size (VmHWM), while it runs.
func (p *Process) PeakRSSBytes() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmHWM")
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	// The port is free only once the listener is closed.
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("freeing port %d: %w", port, err)
	}
	return port, nil
}

// Sim is a running cmd/cfsim.
type Sim struct {
	*Process
	URL string // http://127.0.0.1:port (the API is under /client/v4)
}

// StartSim starts cfsim on a free port with extra flags and waits until it answers.
func StartSim(bin, logDir string, args ...string) (*Sim, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := Start(ProcessOptions{Name: "cfsim", Path: bin, LogDir: logDir, Args: append([]string{"--listen=" + addr}, args...)})
	if err != nil {
		return nil, err
	}
	s := &Sim{Process: p, URL: "http://" + addr}
	if err := WaitFor(10*time.Second, func() bool { _, err := s.get("/_sim/stats"); return err == nil }); err != nil {
		p.Stop()
		return nil, fmt.Errorf("cfsim did not start: %s", p.Output())
	}
	return s, nil
}

// APIURL is the base URL accounts point at.
func (s *Sim) APIURL() string { return s.URL + "/client/v4" }

// AllowFlag is the manager flag that lets accounts send their credentials
// to these simulators (the manager's default allows Cloudflare's API only).
func AllowFlag(sims ...*Sim) string {
	urls := make([]string, 0, len(sims))
	for _, s := range sims {
		urls = append(urls, s.URL+"/")
	}
	return "--allowed-api-urls=" + strings.Join(urls, ",")
}

func (s *Sim) get(path string) ([]byte, error) {
	resp, err := http.Get(s.URL + path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, err
}

// SimToken is a token as the simulator's oracle reports it (with secrets).
type SimToken struct {
	ID                            string    `json:"id"`
	AccountID                     string    `json:"account_id"`
	ZoneID                        string    `json:"zone_id"`
	ClientID                      string    `json:"client_id"`
	Name                          string    `json:"name"`
	Duration                      string    `json:"duration"`
	Enabled                       bool      `json:"enabled"`
	ExpiresAt                     time.Time `json:"expires_at"`
	ClientSecret                  string    `json:"client_secret"`
	PreviousClientSecret          string    `json:"previous_client_secret"`
	PreviousClientSecretExpiresAt time.Time `json:"previous_client_secret_expires_at"`
}

// Tokens returns every token the simulator holds.
func (s *Sim) Tokens() ([]SimToken, error) {
	b, err := s.get("/_sim/tokens")
	if err != nil {
		return nil, err
	}
	var out []SimToken
	return out, json.Unmarshal(b, &out)
}

// Stats returns the simulator's counters as JSON-decoded maps.
func (s *Sim) Stats() (map[string]any, error) {
	b, err := s.get("/_sim/stats")
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

// IssuedSecrets returns every client secret the simulator ever handed out.
func (s *Sim) IssuedSecrets() ([]string, error) {
	b, err := s.get("/_sim/issued-secrets")
	if err != nil {
		return nil, err
	}
	var out []string
	return out, json.Unmarshal(b, &out)
}

// Verify asks whether Access would let the credential in now.
func (s *Sim) Verify(clientID, clientSecret string) (bool, error) {
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/_sim/verify", nil)
	req.Header.Set("CF-Access-Client-Id", clientID)
	req.Header.Set("CF-Access-Client-Secret", clientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// SetFaults switches the simulator's fault injection (JSON as PUT /_sim/faults takes it).
func (s *Sim) SetFaults(faultsJSON string) error {
	req, _ := http.NewRequest(http.MethodPut, s.URL+"/_sim/faults", strings.NewReader(faultsJSON))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT /_sim/faults: %s: %s", resp.Status, b)
	}
	return nil
}

// DeleteToken deletes a token out of band (as a person in the dashboard would).
func (s *Sim) DeleteToken(id string) error {
	req, _ := http.NewRequest(http.MethodDelete, s.URL+"/_sim/tokens/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	return nil
}

// RotateToken rotates a token out of band, as a person in the dashboard
// would: its current secret stops working at once.
func (s *Sim) RotateToken(id string) error {
	resp, err := http.Post(s.URL+"/_sim/tokens/"+id+"/rotate", "application/json", nil)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }() // the status says it all
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /_sim/tokens/%s/rotate: %s", id, resp.Status)
	}
	return nil
}

// StartManager runs the manager binary against the control plane.
func StartManager(bin, kubeconfig, logDir, name string, args ...string) (*Process, error) {
	return Start(ProcessOptions{Name: name, Path: bin, LogDir: logDir, Env: []string{"KUBECONFIG=" + kubeconfig},
		Args: append([]string{"--metrics-bind-address=0", "--health-probe-bind-address=0"}, args...)})
}

// WaitFor polls cond every 100ms until it holds or timeout passes.
func WaitFor(timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s", timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
