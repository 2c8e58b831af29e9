// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadagent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
)

// TartPlugin is the package of the tart driver plugin, built into plugin_dir
// unless Options.Plugins says otherwise.
const TartPlugin = "./cmd/nomad-driver-tart"

// MarkerEnv is set in the agent's environment (inherited by everything it
// spawns) to a value unique to one Agent, so the teardown can find and kill
// its processes and no other test's.
const MarkerEnv = "NOMADAGENT_ID"

const installHint = "get the real agent with NOMAD_BIN=$(../shared/nomad/install.sh build/tools) " +
	"(the shared dir beside the repository clone) and export NOMAD_BIN, or put nomad on PATH; " +
	"under CI=true a missing agent fails the test instead of skipping it"

// FastFaketartEnv are faketart knobs that keep the simulated Mac quick
// (short boot, fast polls); Options.Env overrides each.
var FastFaketartEnv = map[string]string{
	"FAKETART_BOOT_DELAY":         "100ms",
	"FAKETART_IP_POLL_INTERVAL":   "100ms",
	"FAKETART_STOP_POLL_INTERVAL": "20ms",
	"FAKETART_SHUTDOWN_DELAY":     "10ms",
}

// FastTartConfig is plugin config for nomad-driver-tart that keeps tests
// quick (fast agent polls, short stop timeout); prepend it to a
// PluginConfig body.
const FastTartConfig = `agent_poll_interval = "50ms"
vm_stop_timeout = "2s"
`

// readyTimeout bounds one start (process start to node ready). Generous: it
// only bounds failure, and the machine may be loaded.
const readyTimeout = 2 * time.Minute

// Binary returns the Nomad agent binary: NOMAD_BIN, else nomad on PATH.
// Without one the test skips with a message saying how to get it, or fails
// under CI=true.
func Binary(t testing.TB) string {
	t.Helper()
	var why string
	if p := os.Getenv("NOMAD_BIN"); p != "" {
		st, err := os.Stat(p)
		if err == nil && !st.IsDir() {
			return p
		}
		why = fmt.Sprintf("NOMAD_BIN=%s is not a file", p)
	} else if p, err := exec.LookPath("nomad"); err == nil {
		return p
	} else {
		why = "no Nomad agent: NOMAD_BIN is unset and nomad is not on PATH"
	}
	if testutil.InCI() {
		t.Fatalf("%s; %s", why, installHint)
	}
	t.Skipf("%s; %s", why, installHint)
	return ""
}

// Options configures an agent. The zero value is a server+client with the
// tart driver (and faketart as tart) and no ACLs.
type Options struct {
	// Name is the agent's and node's name (default: "nomadagent-<id>").
	Name string
	// ACL enables ACLs; the server is bootstrapped and Agent.Token holds
	// the management token (a client joining a server uses its token).
	ACL bool
	// Plugins are main packages built into plugin_dir (default
	// []string{TartPlugin}); set to an empty non-nil slice for none.
	Plugins []string
	// PluginConfig maps a plugin binary's file name to the HCL body of its
	// `plugin "<name>" { config { … } }` block. Every plugin gets a block.
	PluginConfig map[string]string
	// TartHome is the agent's TART_HOME (default: a private directory).
	// `tart` on the agent's PATH is faketart.
	TartHome string
	// Env is extra agent environment (inherited by plugins and faketart),
	// e.g. FAKETART_BOOT_DELAY. It overrides FastFaketartEnv.
	Env map[string]string
	// Images are OCI references seeded (darwin VMs) into the agent's
	// private fake registry (Agent.Registry) before it starts, so warm
	// pools and cold starts can pull them.
	Images []string
	// Docker configures Nomad's docker driver against the engine at
	// DOCKER_HOST (allow_privileged = false, volumes enabled, no image GC)
	// and waits for it to be healthy. Without it the docker driver is
	// denylisted.
	Docker bool
	// Meta is the client's meta.
	Meta map[string]string
	// ExtraHCL is a second agent config file, merged by Nomad over the
	// generated one (blocks such as client { … } merge).
	ExtraHCL string
	// Server, when set, makes this a client-only agent joining that
	// agent's server.
	Server *Agent
	// Ready is an extra readiness condition on the node (e.g. a device
	// fingerprinted); Start and Restart wait until it holds.
	Ready func(*api.Node) bool
}

// Agent is one running Nomad agent and everything it owns.
type Agent struct {
	HTTPAddr  string // "http://127.0.0.1:PORT"
	RPCAddr   string // "127.0.0.1:PORT"
	DataDir   string
	PluginDir string
	TartHome  string
	Registry  string // FAKETART_REGISTRY: the private fake registry
	NodeName  string
	Token     string // management token when Options.ACL
	// StartupTime is how long the last Start or Restart took from process
	// start to node ready.
	StartupTime time.Duration

	opts    Options
	bin     string
	root    string // private directory holding everything below
	logPath string
	cfgArgs []string
	env     []string
	marker  string
	drivers []string // drivers that must be healthy for the node to be ready

	mu       sync.Mutex
	proc     *os.Process
	done     chan struct{} // closed when proc has exited
	client   *api.Client
	jobNS    map[string]string // job ID -> namespace, for RunJobHCL's jobs
	lastNode uint64            // node ModifyIndex when the process was last killed/stopped
	logStart int64             // size of the log file when the current process started
}

// Start starts an agent and waits until its node is ready and its drivers
// (tart when its plugin is built, docker with Options.Docker) are healthy.
// t.Cleanup tears everything down.
func Start(t testing.TB, opts Options) *Agent {
	t.Helper()
	bin := Binary(t)
	if runtime.GOOS != "linux" {
		t.Skip("nomadagent: the real-agent tier runs on Linux (faketart, process census, mounts)")
	}
	if opts.Plugins == nil {
		opts.Plugins = []string{TartPlugin}
	}
	if opts.Server != nil && opts.Server.opts.ACL {
		opts.ACL = true // a client of an ACL cluster enforces ACLs too
	}
	root, err := os.MkdirTemp("", "nomadagent-")
	if err != nil {
		t.Fatalf("nomadagent: create agent dir: %v", err)
	}
	a := &Agent{opts: opts, bin: bin, root: root, marker: randomID(t), jobNS: map[string]string{}}
	a.DataDir = filepath.Join(root, "data")
	a.PluginDir = filepath.Join(root, "plugins")
	a.logPath = filepath.Join(root, "agent.log")
	a.TartHome = opts.TartHome
	if a.TartHome == "" {
		a.TartHome = filepath.Join(root, "tart")
	}
	a.Registry = filepath.Join(root, "registry")
	a.NodeName = opts.Name
	if a.NodeName == "" {
		a.NodeName = "nomadagent-" + a.marker[:8]
	}
	t.Cleanup(func() { a.teardown(t) })

	for _, dir := range []string{a.DataDir, a.PluginDir, a.TartHome, a.Registry, filepath.Join(root, "bin")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("nomadagent: %v", err)
		}
	}
	for _, ref := range opts.Images {
		if err := faketart.SeedImage(a.Registry, ref, faketart.DefaultConfig("darwin"), faketart.ImageOptions{}); err != nil {
			t.Fatalf("nomadagent: seed image %s: %v", ref, err)
		}
	}
	a.installBinaries(t)
	a.env = a.environment()
	if opts.Server != nil {
		a.Token = opts.Server.Token
	}

	// Free ports are picked by binding :0 and closing; another process may
	// take one before the agent binds it, so a start that failed on a busy
	// port is retried with new ports.
	for attempt := 1; ; attempt++ {
		ports := freePorts(t, 3)
		a.HTTPAddr = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		a.RPCAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
		a.writeConfig(t, ports)
		err := a.startAndWait(t)
		if err == nil {
			break
		}
		if errors.Is(err, errPortBusy) && attempt < 5 {
			t.Logf("nomadagent: port collision, retrying with new ports: %v", err)
			continue
		}
		t.Fatalf("nomadagent: %v", err)
	}
	t.Logf("nomadagent: %s ready at %s in %s", a.NodeName, a.HTTPAddr, a.StartupTime.Round(time.Millisecond))
	return a
}

var errPortBusy = errors.New("port already in use")

func randomID(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("nomadagent: random id: %v", err)
	}
	return hex.EncodeToString(b)
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("nomadagent: pick a free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// installBinaries copies the freshly built plugins into plugin_dir (copies,
// not links, so /proc/<pid>/exe names this agent's plugin_dir) and puts
// faketart on the agent's PATH as tart.
func (a *Agent) installBinaries(t testing.TB) {
	t.Helper()
	for _, pkg := range a.opts.Plugins {
		src := testutil.BuildBinary(t, pkg)
		if err := copyFile(src, filepath.Join(a.PluginDir, filepath.Base(pkg))); err != nil {
			t.Fatalf("nomadagent: install plugin %s: %v", pkg, err)
		}
	}
	fake := testutil.BuildBinary(t, "./sim/cmd/faketart")
	if err := os.Symlink(fake, filepath.Join(a.root, "bin", "tart")); err != nil {
		t.Fatalf("nomadagent: install faketart as tart: %v", err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// environment is the agent's: the test's, without variables that would
// point it (or tart) elsewhere, plus the marker, TART_HOME, faketart first
// on PATH and Options.Env.
func (a *Agent) environment() []string {
	drop := []string{"NOMAD_ADDR", "NOMAD_TOKEN", "NOMAD_NAMESPACE", "NOMAD_REGION", "TART_HOME", "PATH", MarkerEnv,
		"FAKETART_REGISTRY"}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(drop, k) {
			continue
		}
		if _, ok := a.opts.Env[k]; ok {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		MarkerEnv+"="+a.marker,
		"TART_HOME="+a.TartHome,
		"PATH="+filepath.Join(a.root, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
	)
	env = append(env, "FAKETART_REGISTRY="+a.Registry)
	for k, v := range FastFaketartEnv {
		if _, ok := a.opts.Env[k]; !ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range a.opts.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// startAndWait starts the agent process and waits for readiness.
func (a *Agent) startAndWait(t testing.TB) error {
	t.Helper()
	begin := time.Now()
	if err := a.launch(); err != nil {
		return err
	}
	if err := a.waitReady(t, begin.Add(readyTimeout)); err != nil {
		a.killProcess()
		return err
	}
	a.StartupTime = time.Since(begin)
	return nil
}

func (a *Agent) launch() error {
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open agent log: %w", err)
	}
	defer logf.Close()
	if st, err := logf.Stat(); err == nil {
		a.mu.Lock()
		a.logStart = st.Size()
		a.mu.Unlock()
	}
	_, _ = fmt.Fprintf(logf, "==> nomadagent: starting %s %s\n", a.bin, strings.Join(a.cfgArgs, " "))
	// A file, not a pipe, for output: processes the agent leaves behind
	// may hold it open, and Wait must not wait for them.
	cmd := exec.Command(a.bin, append([]string{"agent"}, a.cfgArgs...)...)
	cmd.Env = a.env
	cmd.Dir = a.root
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s agent: %w", a.bin, err)
	}
	done := make(chan struct{})
	a.mu.Lock()
	a.proc, a.done = cmd.Process, done
	a.mu.Unlock()
	go func() { // owned by the agent process: ends when it exits
		_ = cmd.Wait()
		close(done)
	}()
	return nil
}

// exited reports whether the current agent process has exited.
func (a *Agent) exited() bool {
	a.mu.Lock()
	done := a.done
	a.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// signal sends sig to the agent process (group when group is set) and
// waits up to wait for it to exit; it reports whether it did.
func (a *Agent) signal(sig syscall.Signal, group bool, wait time.Duration) bool {
	a.mu.Lock()
	proc, done := a.proc, a.done
	a.mu.Unlock()
	if proc == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	if group {
		_ = syscall.Kill(-proc.Pid, sig)
	} else {
		_ = proc.Signal(sig)
	}
	select {
	case <-done:
		return true
	case <-time.After(wait):
		return false
	}
}

func (a *Agent) killProcess() { a.signal(syscall.SIGKILL, false, 30*time.Second) }

// API returns a client for the agent's HTTP API (with Token set).
func (a *Agent) API() *api.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.client == nil {
		c, err := api.NewClient(&api.Config{Address: a.HTTPAddr, SecretID: a.Token})
		if err != nil {
			// NewClient fails only on a bad TLS or address config, which
			// this package never builds.
			panic(fmt.Sprintf("nomadagent: api client for %s: %v", a.HTTPAddr, err))
		}
		a.client = c
	}
	return a.client
}

// Logs returns the agent's output so far (all starts), plugin logs included.
func (a *Agent) Logs() string {
	b, err := os.ReadFile(a.logPath)
	if err != nil {
		return fmt.Sprintf("(agent log unreadable: %v)", err)
	}
	return string(b)
}

// currentLogs is the log of the current (or last) agent process only.
func (a *Agent) currentLogs() string {
	a.mu.Lock()
	start := a.logStart
	a.mu.Unlock()
	all := a.Logs()
	if start > int64(len(all)) {
		return ""
	}
	return all[start:]
}

// Kill SIGKILLs the agent process only: its plugins, tasks and mounts
// stay, as after a crash. Restart starts it again.
func (a *Agent) Kill(t testing.TB) {
	t.Helper()
	a.rememberNode()
	if !a.signal(syscall.SIGKILL, false, 30*time.Second) {
		t.Fatalf("nomadagent: agent %s did not exit after SIGKILL", a.NodeName)
	}
}

// Stop stops the agent process gracefully (SIGINT, then SIGKILL after 30s).
// Its tasks keep running, as Nomad's client leaves them (external plugins
// may outlive it until they next write to their closed log pipe); Restart
// starts it again, the teardown removes everything.
func (a *Agent) Stop(t testing.TB) {
	t.Helper()
	a.rememberNode()
	if !a.signal(syscall.SIGINT, false, 30*time.Second) {
		t.Logf("nomadagent: agent %s ignored SIGINT for 30s; killing it", a.NodeName)
		a.Kill(t)
	}
}

// Restart starts the agent again on the same data dir, ports and config
// (stopping it first with SIGKILL if it still runs) and waits until its
// node has registered again and is ready.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	if !a.exited() {
		a.Kill(t)
	}
	if err := a.startAndWait(t); err != nil {
		t.Fatalf("nomadagent: restart %s: %v", a.NodeName, err)
	}
	t.Logf("nomadagent: %s restarted in %s", a.NodeName, a.StartupTime.Round(time.Millisecond))
}

// rememberNode records the node's ModifyIndex before the process goes away,
// so a restart waits for the node to register anew rather than trusting the
// server's stale "ready".
func (a *Agent) rememberNode() {
	srv := a.serverAPI()
	nodes, _, err := srv.Nodes().List(&api.QueryOptions{Filter: fmt.Sprintf("Name == %q", a.NodeName)})
	if err != nil || len(nodes) != 1 {
		return
	}
	a.mu.Lock()
	a.lastNode = nodes[0].ModifyIndex
	a.mu.Unlock()
}

// serverAPI is the API of the agent holding the server (this one, or
// Options.Server): the node list must be read there while this one is down.
func (a *Agent) serverAPI() *api.Client {
	if a.opts.Server != nil {
		return a.opts.Server.API()
	}
	return a.API()
}

// NodeID returns the ID of this agent's node.
func (a *Agent) NodeID(t testing.TB) string {
	t.Helper()
	n, err := a.node()
	if err != nil {
		t.Fatalf("nomadagent: node of %s: %v", a.NodeName, err)
	}
	return n.ID
}

// Node returns this agent's node as the server sees it.
func (a *Agent) Node(t testing.TB) *api.Node {
	t.Helper()
	n, err := a.node()
	if err != nil {
		t.Fatalf("nomadagent: node of %s: %v", a.NodeName, err)
	}
	return n
}

func (a *Agent) node() (*api.Node, error) {
	c := a.serverAPI()
	stubs, _, err := c.Nodes().List(&api.QueryOptions{Filter: fmt.Sprintf("Name == %q", a.NodeName)})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	if len(stubs) != 1 {
		return nil, fmt.Errorf("%d nodes named %s", len(stubs), a.NodeName)
	}
	n, _, err := c.Nodes().Info(stubs[0].ID, nil)
	if err != nil {
		return nil, fmt.Errorf("read node %s: %w", stubs[0].ID, err)
	}
	return n, nil
}
