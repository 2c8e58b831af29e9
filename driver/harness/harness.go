// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

// Options configure a Harness. The zero value is valid.
type Options struct {
	// PluginConfig is the text inside the agent's
	// plugin "<name>" { config { ... } } block, e.g. `pool_size = 2`.
	// Empty means no config block (defaults apply).
	PluginConfig string
	// Args are the plugin block's args (extra argv of the plugin process).
	Args []string
	// Env holds extra "KEY=value" entries for the plugin process, on top of
	// (and overriding) the test process's environment, which Nomad passes
	// through whole. Prefer this to t.Setenv, which forbids t.Parallel.
	Env []string
	// ClientMinPort and ClientMaxPort are sent in SetConfig's nomad_config
	// (defaults 14000 and 14512, Nomad's defaults).
	ClientMinPort, ClientMaxPort uint32
	// Timeout bounds every RPC and every wait of the harness (default 30s).
	Timeout time.Duration
	// LogLevel is the level of plugin log lines copied to the test log
	// (default Debug).
	LogLevel hclog.Level
	// NoHostEnv leaves the test process's environment out of tasks' env.
	// Nomad adds it for drivers without image isolation.
	NoHostEnv bool
	// FullAgentStart also replays the two short-lived processes of an agent
	// start before the long-lived one (reference 1.4: discovery with
	// PluginInfo+ConfigSchema, then validation with SetConfig twice and no
	// nomad_config). Only for binaries.
	FullAgentStart bool
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.ClientMinPort == 0 {
		o.ClientMinPort = 14000
	}
	if o.ClientMaxPort == 0 {
		o.ClientMaxPort = 14512
	}
	if o.LogLevel == hclog.NoLevel {
		o.LogLevel = hclog.Debug
	}
}

// Harness plays a Nomad client agent against one driver plugin. Create it
// with Launch (a built binary, as Nomad runs it) or InProcess (a driver value
// served over real gRPC in the test process). All of its resources are
// released by t.Cleanup: tasks still known are destroyed, the plugin is
// stopped, directories are removed.
//
// Methods taking a testing.TB fail that test with t.Fatalf and a message
// saying what was being done; the Try* variants return errors instead, for
// tests that expect a failure. A Harness is safe for concurrent use.
type Harness struct {
	t        testing.TB
	opts     Options
	launcher launcher
	logw     *testLogWriter
	logger   hclog.Logger
	allocDir string // the client's alloc_dir; allocations live below it
	nodeID   string
	nodeName string

	// mu guards everything below.
	mu      sync.Mutex
	inst    *instance
	tasks   map[string]*Task
	events  []Event
	fps     []Fingerprint // of the current instance only
	changed chan struct{} // closed and replaced when events/fps change
	// broken lists driver contract violations seen in the background
	// (streams); cleanup reports them as test errors.
	broken []string
}

// Launch starts the plugin binary at path the way Nomad's client does and
// runs the client-start sequence (PluginInfo, ConfigSchema, SetConfig, Init,
// Fingerprint and TaskEvents streams). It returns once the first fingerprint
// has arrived. Build the binary with internal/testutil.BuildBinary.
func Launch(t testing.TB, path string, opts Options) *Harness {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatalf("harness: resolve plugin path %q: %v", path, err)
	}
	return start(t, &binaryLauncher{path: abs, args: opts.Args, env: opts.Env}, opts)
}

// InProcess serves drivers made by newDriver over real gRPC inside the test
// process (go-plugin's TestPluginGRPCConn, with driver/sdk's adapter) and
// runs the client-start sequence. newDriver has the signature sdk.Serve
// takes; its logger writes to the test log. Relaunch calls it again, so it
// should return a fresh driver that shares nothing in memory with earlier
// ones, as a new process would. KillPlugin drops the server and every
// connection instead of sending a signal.
func InProcess(t testing.TB, newDriver func(hclog.Logger) sdk.Driver, opts Options) *Harness {
	t.Helper()
	if opts.FullAgentStart {
		t.Fatalf("harness: Options.FullAgentStart needs a binary (use Launch)")
	}
	return start(t, &inProcessLauncher{newServer: func(logger hclog.Logger) (plugin.GRPCPlugin, error) {
		logger = logger.Named("plugin")
		return &sdk.GRPCPlugin{Driver: newDriver(logger), Logger: logger}, nil
	}}, opts)
}

func start(t testing.TB, l launcher, opts Options) *Harness {
	t.Helper()
	opts.setDefaults()
	// First, so that its removal runs after every other cleanup.
	root := t.TempDir()
	logw := newTestLogWriter(t)
	h := &Harness{
		t:        t,
		opts:     opts,
		launcher: l,
		logw:     logw,
		logger: hclog.New(&hclog.LoggerOptions{
			Name:   "client.driver_mgr",
			Level:  opts.LogLevel,
			Output: logw,
		}),
		allocDir: filepath.Join(root, "alloc"),
		nodeID:   newUUID(),
		nodeName: "harness-node",
		tasks:    map[string]*Task{},
		changed:  make(chan struct{}),
	}
	t.Cleanup(logw.disable)
	t.Cleanup(h.cleanup)
	if opts.FullAgentStart {
		if err := h.agentStartProcesses(); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	if err := h.launchInstance(t); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return h
}

// launchInstance starts a plugin process and runs the client-start sequence.
func (h *Harness) launchInstance(t testing.TB) error {
	t.Helper()
	proc, err := h.launcher.launch(t, h.logger)
	if err != nil {
		return err
	}
	inst := newInstance(proc, h)
	if err := inst.clientStart(h.opts); err != nil {
		_ = inst.shutdown(false)
		return err
	}
	h.mu.Lock()
	h.inst = inst
	h.fps = nil
	h.notifyLocked()
	h.mu.Unlock()
	inst.openStreams()
	if _, err := h.waitFingerprint(time.Now().Add(h.opts.Timeout), func(*Fingerprint) bool { return true }); err != nil {
		return fmt.Errorf("%w (Nomad's client waits for the first fingerprint before it registers the node; send it at once)", err)
	}
	return nil
}

// current returns the running plugin instance or fails t.
func (h *Harness) current(t testing.TB) *instance {
	t.Helper()
	h.mu.Lock()
	inst := h.inst
	h.mu.Unlock()
	if inst == nil || inst.dead() {
		t.Fatalf("harness: the plugin is not running (call Relaunch after KillPlugin or StopPlugin)")
	}
	return inst
}

// PluginInfo returns the PluginInfo answer of the running plugin.
func (h *Harness) PluginInfo(t testing.TB) PluginInfo {
	t.Helper()
	return h.current(t).info
}

// PluginLogs returns every log line seen so far, as copied to the test log:
// the plugin's own hclog records (re-emitted by go-plugin with all their
// key/value pairs, or written by an in-process driver's logger) and the
// harness's. Search it to prove a secret never reaches the logs: after
// StopPlugin or KillPlugin everything the process wrote is in (go-plugin
// drains its stderr before Kill returns); before, use WaitPluginLog for
// lines that must appear.
func (h *Harness) PluginLogs() string { return h.logw.String() }

// WaitPluginLog waits until the log lines (see PluginLogs) contain substr.
// Plugin log lines travel asynchronously through the plugin's stderr, so
// they may arrive after the call that caused them has returned.
func (h *Harness) WaitPluginLog(t testing.TB, substr string) {
	t.Helper()
	h.waitPluginLog(t, fmt.Sprintf("%q", substr), func(text string) (string, bool) {
		return "", strings.Contains(text, substr)
	})
}

// WaitPluginLogLine waits until one log line (see PluginLogs) contains
// every part, and returns it. Match a message and its key/value pairs as
// separate parts: go-plugin relays a plugin's hclog pairs in map order, so
// two keys of a line come in either order.
func (h *Harness) WaitPluginLogLine(t testing.TB, parts ...string) string {
	t.Helper()
	return h.waitPluginLog(t, fmt.Sprintf("all of %q", parts), func(text string) (string, bool) {
		for line := range strings.SplitSeq(text, "\n") {
			if containsAll(line, parts) {
				return line, true
			}
		}
		return "", false
	})
}

// waitPluginLog polls the log lines with find until it reports a match or
// the harness timeout fails t; want describes the match for the failure.
func (h *Harness) waitPluginLog(t testing.TB, want string, find func(text string) (string, bool)) string {
	t.Helper()
	return waitLog(t, h.logw, h.opts.Timeout, want, find)
}

// waitLog is waitPluginLog for any harness's log writer (the driver's and
// the device's).
func waitLog(t testing.TB, logw *testLogWriter, timeout time.Duration, want string, find func(text string) (string, bool)) string {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		text, changed := logw.snapshot()
		if match, ok := find(text); ok {
			return match
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("harness: no log line containing %s within %s", want, timeout)
			return ""
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// PID returns the process ID of the running plugin (0 in-process).
func (h *Harness) PID(t testing.TB) int {
	t.Helper()
	return h.current(t).proc.pid
}

// KillPlugin kills the plugin process with SIGKILL, as a crash would, and
// nothing else: its tasks must survive. In-process it drops the gRPC server
// and all connections. Streams end; in-flight calls fail. Call Relaunch to
// get a fresh process.
func (h *Harness) KillPlugin(t testing.TB) {
	t.Helper()
	inst := h.current(t)
	if err := inst.shutdown(true); err != nil {
		t.Fatalf("harness: kill plugin: %v", err)
	}
}

// StopPlugin shuts the plugin down the way a graceful client shutdown does:
// Driver/Shutdown (Unimplemented tolerated, 2s deadline), then go-plugin's
// Kill (controller shutdown, up to 2s, then SIGKILL). Tasks must survive.
func (h *Harness) StopPlugin(t testing.TB) {
	t.Helper()
	inst := h.current(t)
	if err := inst.shutdown(false); err != nil {
		t.Fatalf("harness: stop plugin: %v", err)
	}
}

// Relaunch starts a fresh plugin process and runs the client-start sequence
// (SetConfig with nomad_config, Init, streams), as the client does after the
// long-lived process died or after an agent restart. Follow it with
// RecoverTask for each task. Fingerprints of the old process are forgotten;
// events are kept.
func (h *Harness) Relaunch(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	old := h.inst
	h.mu.Unlock()
	if old != nil && !old.dead() {
		t.Fatalf("harness: Relaunch while the plugin still runs (call KillPlugin or StopPlugin first)")
	}
	if err := h.launchInstance(t); err != nil {
		t.Fatalf("harness: relaunch: %v", err)
	}
}

// RestartAgent simulates a graceful client agent restart: StopPlugin,
// Relaunch, then RecoverTask (with msgpack_driver_config cleared, as read
// from the state DB) for every task that was not destroyed.
func (h *Harness) RestartAgent(t testing.TB) {
	t.Helper()
	h.StopPlugin(t)
	h.Relaunch(t)
	for _, task := range h.liveTasks() {
		h.RecoverTask(t, task)
	}
}

func (h *Harness) liveTasks() []*Task {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*Task
	for _, task := range h.tasks {
		if !task.destroyed {
			out = append(out, task)
		}
	}
	return out
}

func (h *Harness) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// ctx returns a context bounded by the harness timeout.
func (h *Harness) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), h.opts.Timeout)
}

// cleanup destroys every task still known, then stops the plugin. A task
// must never outlive its test, even when the test killed the plugin and
// failed before relaunching it.
func (h *Harness) cleanup() {
	tasks := h.liveTasks()
	if len(tasks) > 0 {
		h.mu.Lock()
		inst := h.inst
		h.mu.Unlock()
		if inst == nil || inst.dead() {
			if err := h.launchInstance(h.t); err != nil {
				h.t.Errorf("harness cleanup: relaunch plugin to destroy %d leftover task(s): %v", len(tasks), err)
				tasks = nil
			}
		}
	}
	for _, task := range tasks {
		h.mu.Lock()
		inst := h.inst
		h.mu.Unlock()
		ctx, cancel := h.ctx()
		// Recovering first makes a fresh process know the task; a process
		// that already knows it must succeed without side effects.
		_, _ = inst.driver.RecoverTask(ctx, recoverRequest(task.Handle, false))
		if err := h.destroy(ctx, inst, task.ID, true); err != nil {
			h.t.Errorf("harness cleanup: DestroyTask(%s, force=true): %v", task.ID, err)
		}
		cancel()
	}
	h.mu.Lock()
	inst := h.inst
	all := make([]*Task, 0, len(h.tasks))
	for _, task := range h.tasks {
		all = append(all, task)
	}
	h.mu.Unlock()
	if inst != nil && !inst.dead() {
		_ = inst.shutdown(false)
	}
	for _, task := range all {
		task.logs.close()
	}
	h.mu.Lock()
	broken := h.broken
	h.mu.Unlock()
	for _, v := range broken {
		h.t.Errorf("driver contract: %s", v)
	}
}

// ContractViolations returns the driver contract violations the harness
// noticed in the background so far (a Fingerprint or TaskEvents stream that
// ended, an event Nomad could not route, ...) and acknowledges them.
// Violations that no test acknowledged fail the test at cleanup.
func (h *Harness) ContractViolations() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.broken
	h.broken = nil
	return out
}

// violation records a contract violation noticed outside any test call.
func (h *Harness) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.logger.Error("driver contract violation", "problem", msg)
	h.mu.Lock()
	h.broken = append(h.broken, msg)
	h.notifyLocked()
	h.mu.Unlock()
}
