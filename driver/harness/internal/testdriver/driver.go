// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// stateVersion is the version of driverState in task handles.
const stateVersion = 1

// driverState is everything a fresh plugin process needs to manage a task.
type driverState struct {
	WrapperPID int        `json:"wrapper_pid"`
	StateDir   string     `json:"state_dir"`
	StartedAt  time.Time  `json:"started_at"`
	Config     taskConfig `json:"config"`
}

// Options configure the driver.
type Options struct {
	// WrapperPath is the binary started as "<path> wrap ..." for each task.
	// Default: this process's own executable (right for the plugin binary).
	WrapperPath string
	// PollInterval is how often a recovered task's status file is checked
	// (default 50ms).
	PollInterval time.Duration
}

// Driver runs host processes. Safe for concurrent use.
type Driver struct {
	log  hclog.Logger
	opts Options

	// ctx ends with Shutdown and stops the monitors of recovered tasks.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	config pluginConfig
	agent  *sdk.AgentConfig
	tasks  map[string]*task
	subs   map[chan *sdk.TaskEvent]struct{}
}

var (
	_ sdk.Driver       = (*Driver)(nil)
	_ sdk.ExecStreamer = (*Driver)(nil)
	_ sdk.Shutdowner   = (*Driver)(nil)
)

// New returns a driver logging to log.
func New(log hclog.Logger, opts Options) *Driver {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{
		log: log, opts: opts, ctx: ctx, cancel: cancel,
		config: pluginConfig{Greeting: "hello"},
		tasks:  map[string]*task{},
		subs:   map[chan *sdk.TaskEvent]struct{}{},
	}
}

// PluginInfo names the test driver (sdk.Driver).
func (d *Driver) PluginInfo() sdk.PluginInfo { return sdk.PluginInfo{Name: Name, Version: "0.1.0"} }

// ConfigSchema is the plugin block's schema (sdk.Driver).
func (d *Driver) ConfigSchema() *hclspec.Spec { return pluginSchema }

// TaskConfigSchema is the task config's schema (sdk.Driver).
func (d *Driver) TaskConfigSchema() *hclspec.Spec { return taskSchema }

// Capabilities are signals, exec and no filesystem isolation (sdk.Driver).
func (d *Driver) Capabilities() *sdk.Capabilities {
	return &sdk.Capabilities{SendSignals: true, Exec: true, FSIsolation: sdk.FSIsolationNone}
}

// SetConfig stores the plugin config; idempotent.
func (d *Driver) SetConfig(cfg *sdk.PluginConfig) error {
	pc, err := decodePluginConfig(cfg.RawConfig)
	if err != nil {
		return fmt.Errorf("failed to decode plugin config: %w", err)
	}
	d.mu.Lock()
	d.config, d.agent = pc, cfg.Agent
	d.mu.Unlock()
	return nil
}

// Shutdown stops background work; tasks keep running.
func (d *Driver) Shutdown(context.Context) error {
	d.cancel()
	return nil
}

// Fingerprint sends one healthy fingerprint carrying the configured
// greeting and the agent's port range, then stays open.
func (d *Driver) Fingerprint(ctx context.Context) (<-chan *sdk.Fingerprint, error) {
	d.mu.Lock()
	attrs := map[string]any{
		"driver." + Name + ".version":  "0.1.0",
		"driver." + Name + ".greeting": d.config.Greeting,
	}
	if d.agent != nil {
		attrs["driver."+Name+".client_min_port"] = int64(d.agent.ClientMinPort)
	}
	d.mu.Unlock()
	ch := make(chan *sdk.Fingerprint, 1)
	ch <- &sdk.Fingerprint{Health: sdk.HealthStateHealthy, HealthDescription: "ready", Attributes: attrs}
	return ch, nil
}

// TaskEvents streams events of all tasks until ctx ends.
func (d *Driver) TaskEvents(ctx context.Context) (<-chan *sdk.TaskEvent, error) {
	ch := make(chan *sdk.TaskEvent, 64)
	d.mu.Lock()
	d.subs[ch] = struct{}{}
	d.mu.Unlock()
	go func() {
		<-ctx.Done()
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
	}()
	return ch, nil
}

func (d *Driver) emit(cfg *sdk.TaskConfig, msg string, annotations map[string]string) {
	ev := &sdk.TaskEvent{TaskID: cfg.ID, AllocID: cfg.AllocID, TaskName: cfg.Name, Timestamp: time.Now(), Message: msg, Annotations: annotations}
	d.mu.Lock()
	defer d.mu.Unlock()
	for ch := range d.subs {
		select {
		case ch <- ev:
		default: // a stuck reader must not block task operations
		}
	}
}

// StartTask starts the command under the wrapper, in its own session so
// that it survives the plugin.
func (d *Driver) StartTask(_ context.Context, cfg *sdk.TaskConfig) (*sdk.TaskHandle, error) {
	d.mu.Lock()
	_, exists := d.tasks[cfg.ID]
	d.mu.Unlock()
	if exists {
		return nil, fmt.Errorf("task %s already started", cfg.ID)
	}
	tc, err := decodeTaskConfig(cfg.RawDriverConfig)
	if err != nil {
		return nil, fmt.Errorf("failed to decode task config: %w", err)
	}
	stateDir := filepath.Join(cfg.TaskDir(), "private", Name)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create state dir: %w", err)
	}
	cmd, err := d.wrapperCommand(cfg, tc, stateDir)
	if err != nil {
		return nil, err
	}
	err = cmd.Start()
	closeFiles(cmd) // the wrapper has its own copies of the FIFOs now
	if err != nil {
		return nil, fmt.Errorf("failed to start wrapper: %w", err)
	}
	st := driverState{WrapperPID: cmd.Process.Pid, StateDir: stateDir, StartedAt: time.Now(), Config: tc}
	tk := newTask(cfg, st)
	go func() {
		_ = cmd.Wait() // reap the wrapper; its status file says how the task ended
		tk.finish(readExit(stateDir))
	}()
	d.mu.Lock()
	d.tasks[cfg.ID] = tk
	d.mu.Unlock()
	d.log.Info("started task", "task_id", cfg.ID, "wrapper_pid", st.WrapperPID)
	d.emit(cfg, "started task", map[string]string{"wrapper_pid": fmt.Sprint(st.WrapperPID)})
	data, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("failed to encode driver state: %w", err)
	}
	return &sdk.TaskHandle{Version: stateVersion, Config: cfg, State: sdk.TaskStateRunning, DriverState: data}, nil
}

func (d *Driver) wrapperCommand(cfg *sdk.TaskConfig, tc taskConfig, stateDir string) (*exec.Cmd, error) {
	wrapper := d.opts.WrapperPath
	if wrapper == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("failed to find own executable: %w", err)
		}
		wrapper = self
	}
	args := append([]string{WrapCommand, stateDir, tc.Command}, tc.Args...)
	cmd := exec.Command(wrapper, args...)
	cmd.Dir = cfg.TaskDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	for k, v := range cfg.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	sort.Strings(cmd.Env)
	var err error
	if cmd.Stdout, err = os.OpenFile(cfg.StdoutPath, os.O_WRONLY, 0); err != nil {
		return nil, fmt.Errorf("failed to open stdout %s: %w", cfg.StdoutPath, err)
	}
	if cmd.Stderr, err = os.OpenFile(cfg.StderrPath, os.O_WRONLY, 0); err != nil {
		closeFiles(cmd)
		return nil, fmt.Errorf("failed to open stderr %s: %w", cfg.StderrPath, err)
	}
	return cmd, nil
}

func closeFiles(cmd *exec.Cmd) {
	for _, w := range []any{cmd.Stdout, cmd.Stderr} {
		if f, ok := w.(*os.File); ok {
			_ = f.Close()
		}
	}
}

// RecoverTask re-attaches from driver_state alone; a task this process
// already knows is left alone.
func (d *Driver) RecoverTask(_ context.Context, h *sdk.TaskHandle) error {
	if h == nil || h.Config == nil {
		return errors.New("handle has no task config")
	}
	d.mu.Lock()
	_, known := d.tasks[h.Config.ID]
	d.mu.Unlock()
	if known {
		return nil
	}
	var st driverState
	if err := json.Unmarshal(h.DriverState, &st); err != nil {
		return fmt.Errorf("failed to decode driver state: %w", err)
	}
	_, statErr := os.Stat(filepath.Join(st.StateDir, exitFile))
	if statErr != nil && !alive(st.WrapperPID) {
		return fmt.Errorf("task %s is gone: wrapper %d not running and no exit status: %w", h.Config.ID, st.WrapperPID, sdk.ErrTaskNotFound)
	}
	tk := newTask(h.Config, st)
	d.mu.Lock()
	d.tasks[h.Config.ID] = tk
	d.mu.Unlock()
	go d.poll(tk)
	d.log.Info("recovered task", "task_id", h.Config.ID, "wrapper_pid", st.WrapperPID)
	d.emit(h.Config, "recovered task", nil)
	return nil
}

// poll watches a recovered task, which is not our child, for its status
// file.
func (d *Driver) poll(tk *task) {
	tick := time.NewTicker(d.opts.PollInterval)
	defer tick.Stop()
	for {
		if _, err := os.Stat(filepath.Join(tk.state.StateDir, exitFile)); err == nil {
			tk.finish(readExit(tk.state.StateDir))
			return
		}
		if !alive(tk.state.WrapperPID) {
			tk.finish(readExit(tk.state.StateDir))
			return
		}
		select {
		case <-tick.C:
		case <-d.ctx.Done():
			return
		}
	}
}

func readExit(stateDir string) *sdk.ExitResult {
	data, err := os.ReadFile(filepath.Join(stateDir, exitFile))
	if err != nil {
		return &sdk.ExitResult{ExitCode: -1, Err: errors.New("task ended without recording an exit status (wrapper killed)")}
	}
	var st exitStatus
	if err := json.Unmarshal(data, &st); err != nil {
		return &sdk.ExitResult{ExitCode: -1, Err: fmt.Errorf("unreadable exit status: %w", err)}
	}
	res := &sdk.ExitResult{ExitCode: st.ExitCode, Signal: st.Signal}
	if st.Err != "" {
		res.Err = errors.New(st.Err)
	}
	return res
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: trust kill(0)
	}
	// Format: pid (comm) state ...; comm may hold spaces or parentheses.
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == ')' && i+2 < len(data) {
			return data[i+2] != 'Z'
		}
	}
	return true
}

func (d *Driver) task(id string) (*task, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	tk, ok := d.tasks[id]
	if !ok {
		return nil, fmt.Errorf("task %s: %w", id, sdk.ErrTaskNotFound)
	}
	return tk, nil
}

// WaitTask yields the exit result once the task has ended.
func (d *Driver) WaitTask(ctx context.Context, id string) (<-chan *sdk.ExitResult, error) {
	tk, err := d.task(id)
	if err != nil {
		return nil, err
	}
	ch := make(chan *sdk.ExitResult, 1)
	go func() {
		select {
		case <-tk.done:
			ch <- tk.exitResult()
		case <-ctx.Done():
		}
		close(ch)
	}()
	return ch, nil
}

// StopTask signals the command (SIGINT by default), waits timeout, then
// kills it.
func (d *Driver) StopTask(ctx context.Context, id string, timeout time.Duration, signal string) error {
	tk, err := d.task(id)
	if err != nil {
		return err
	}
	if tk.exited() {
		return nil
	}
	sig := syscall.SIGINT
	if signal != "" {
		if sig, err = parseSignal(signal); err != nil {
			return err
		}
	}
	if err := tk.signal(sig); err != nil {
		return err
	}
	select {
	case <-tk.done:
		return nil
	case <-time.After(timeout):
	case <-ctx.Done():
		return ctx.Err()
	}
	d.log.Info("task ignored stop signal, killing", "task_id", id, "signal", sig.String())
	if err := tk.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-tk.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DestroyTask kills the task's whole session if needed and forgets it.
func (d *Driver) DestroyTask(_ context.Context, id string, force bool) error {
	d.mu.Lock()
	tk, ok := d.tasks[id]
	d.mu.Unlock()
	if !ok {
		return nil
	}
	if !tk.exited() {
		if !force {
			return fmt.Errorf("task %s is still running", id)
		}
		_ = syscall.Kill(-tk.state.WrapperPID, syscall.SIGKILL)
		select {
		case <-tk.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("task %s did not exit after SIGKILL", id)
		}
	}
	d.mu.Lock()
	delete(d.tasks, id)
	d.mu.Unlock()
	return nil
}

// InspectTask reports the task's state.
func (d *Driver) InspectTask(_ context.Context, id string) (*sdk.TaskStatus, error) {
	tk, err := d.task(id)
	if err != nil {
		return nil, err
	}
	st := &sdk.TaskStatus{ID: id, Name: tk.cfg.Name, State: sdk.TaskStateRunning, StartedAt: tk.state.StartedAt}
	if tk.exited() {
		st.State, st.CompletedAt, st.ExitResult = sdk.TaskStateExited, tk.completedAt(), tk.exitResult()
	}
	return st, nil
}

// TaskStats sends a timestamped sample every interval until the task ends.
func (d *Driver) TaskStats(ctx context.Context, id string, interval time.Duration) (<-chan *sdk.TaskResourceUsage, error) {
	tk, err := d.task(id)
	if err != nil {
		return nil, err
	}
	ch := make(chan *sdk.TaskResourceUsage)
	go func() {
		defer close(ch)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			u := &sdk.TaskResourceUsage{Timestamp: time.Now()}
			if rss, ok := rssBytes(tk.childPID()); ok {
				u.Memory = sdk.MemoryUsage{RSS: rss, Measured: []string{"RSS"}}
			}
			select {
			case ch <- u:
			case <-ctx.Done():
				return
			case <-tk.done:
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			case <-tk.done:
				return
			}
		}
	}()
	return ch, nil
}

// SignalTask delivers a named signal to the command.
func (d *Driver) SignalTask(_ context.Context, id, signal string) error {
	tk, err := d.task(id)
	if err != nil {
		return err
	}
	sig, err := parseSignal(signal)
	if err != nil {
		return err
	}
	return tk.signal(sig)
}

// ExecTask runs cmd on the host with the task's environment, in its
// directory.
func (d *Driver) ExecTask(ctx context.Context, id string, command []string, timeout time.Duration) (*sdk.ExecResult, error) {
	tk, err := d.task(id)
	if err != nil {
		return nil, err
	}
	if len(command) == 0 {
		return nil, errors.New("empty command")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := tk.execCommand(ctx, command)
	var stdout, stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := &sdk.ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitResult: &sdk.ExitResult{}}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitResult.ExitCode = ee.ExitCode()
	case err != nil:
		return nil, fmt.Errorf("failed to run %s: %w", command[0], err)
	}
	return res, nil
}

// ExecTaskStreaming runs an interactive command; TTYs are not supported.
func (d *Driver) ExecTaskStreaming(ctx context.Context, id string, opts *sdk.ExecOptions) (*sdk.ExitResult, error) {
	tk, err := d.task(id)
	if err != nil {
		return nil, err
	}
	if opts.Tty {
		return nil, fmt.Errorf("tty exec: %w", sdk.ErrNotSupported)
	}
	if len(opts.Command) == 0 {
		return nil, errors.New("empty command")
	}
	cmd := tk.execCommand(ctx, opts.Command)
	cmd.Stdout, cmd.Stderr = opts.Stdout, opts.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("failed to create stdin pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", opts.Command[0], err)
	}
	// Not waited for: it ends when the client closes stdin or the session
	// (and with it opts.Stdin) ends.
	go func() {
		if opts.Stdin != nil {
			_, _ = io.Copy(stdin, opts.Stdin)
		}
		_ = stdin.Close()
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return &sdk.ExitResult{ExitCode: ee.ExitCode()}, nil
	case err != nil:
		return nil, fmt.Errorf("failed to run %s: %w", opts.Command[0], err)
	}
	return &sdk.ExitResult{}, nil
}
