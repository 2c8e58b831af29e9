// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	hclspecpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/hclspec"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// TaskSpec describes a task the way a job file would. Only Config is
// required; everything else has Nomad-like defaults.
type TaskSpec struct {
	// Config is the text inside the task's config { } block, e.g.
	// `image = "macos"`. ${NOMAD_TASK_DIR}, ${NOMAD_ALLOC_ID} and every
	// other task env variable are interpolated as the client does. An empty
	// config fails like Nomad ("Root value must be object").
	Config string

	Name        string // task name (default "task")
	AllocID     string // default: a fresh allocation; reuse to share one
	JobName     string // default "job"
	JobID       string // default JobName
	ParentJobID string // set for dispatched jobs (NOMAD_JOB_PARENT_ID)
	Group       string // task group (default "group")
	Namespace   string // default "default"
	User        string

	Env  map[string]string // the job's env block
	Meta map[string]string // NOMAD_META_<key>
	// DeviceEnv is the environment device plugins' Reserve answered
	// (DeviceHarness.Reserve): the client adds it to env and device_env.
	DeviceEnv map[string]string

	CPU         int64  // MHz (default 100)
	MemoryMB    int64  // MiB (default 300)
	MemoryMaxMB int64  // MiB (0 = unset)
	Cores       string // reserved cores, e.g. "0,1" (LinuxResources.cpuset_cpus)
	Ports       []Port

	// LogsDisabled mirrors logs { disabled = true }: both log paths are
	// /dev/null and no collector runs.
	LogsDisabled bool

	// PayloadFile and Payload mirror dispatch_payload { file = ... }: the
	// payload is written to <task>/local/<PayloadFile> (mode 0777) before
	// StartTask.
	PayloadFile string
	Payload     []byte
	// Files are written relative to the task directory before StartTask
	// (templates, artifacts), e.g. "local/config.json".
	Files map[string][]byte
}

// Port is a group-level allocated port (network { port "label" {} }).
type Port struct {
	Label  string
	Value  int32  // host port
	To     int32  // port inside the task (0 = same as Value)
	HostIP string // default 127.0.0.1
}

func (s *TaskSpec) setDefaults() {
	if s.Name == "" {
		s.Name = "task"
	}
	if s.AllocID == "" {
		s.AllocID = newUUID()
	}
	if s.JobName == "" {
		s.JobName = "job"
	}
	if s.JobID == "" {
		s.JobID = s.JobName
	}
	if s.Group == "" {
		s.Group = "group"
	}
	if s.Namespace == "" {
		s.Namespace = "default"
	}
	if s.CPU == 0 {
		s.CPU = 100
	}
	if s.MemoryMB == 0 {
		s.MemoryMB = 300
	}
}

// Task is a started task as the client remembers it.
type Task struct {
	ID      string // <alloc_id>/<task>/<8 chars>
	AllocID string
	Name    string
	// AllocDir is TaskConfig.alloc_dir; TaskDir is <AllocDir>/<Name>.
	AllocDir, TaskDir string
	// Config is the TaskConfig sent in StartTask.
	Config *driverpb.TaskConfig
	// Handle is the handle as the client stores it (from StartTaskResponse).
	Handle *driverpb.TaskHandle
	// NetworkOverride is what StartTask returned, if anything.
	NetworkOverride *driverpb.NetworkOverride

	logs      *taskLogs
	destroyed bool // guarded by Harness.mu
}

// LocalDir is the task's local/ directory on the host (NOMAD_TASK_DIR for
// drivers without filesystem isolation).
func (t *Task) LocalDir() string { return filepath.Join(t.TaskDir, "local") }

// SecretsDir is the task's secrets/ directory on the host.
func (t *Task) SecretsDir() string { return filepath.Join(t.TaskDir, "secrets") }

// SharedDir is the allocation's shared alloc/ directory on the host.
func (t *Task) SharedDir() string { return filepath.Join(t.AllocDir, "alloc") }

// ValidationError is returned by TryStartTask when Nomad would never call
// the driver with the task config: it does not decode against the driver's
// task schema (Nomad's client records the task event "Failed Validation"
// with this text, "failed to parse config: ..."), or the job file's config
// block would not even parse (`nomad job run` refuses it). Err is usually a
// *hclspec.ConfigError, whose Stage says which.
type ValidationError struct{ Err error }

func (e *ValidationError) Error() string {
	var cerr *hclspec.ConfigError
	if errors.As(e.Err, &cerr) {
		return cerr.Error()
	}
	return "failed to parse config: " + e.Err.Error()
}

func (e *ValidationError) Unwrap() error { return e.Err }

// IsRecoverable reports whether err (from TryStartTask) carries Nomad's
// RecoverableError{recoverable: true} as the first gRPC status detail, which
// makes the client apply the local restart policy. It is
// sdk.IsRecoverableStatus, the check the protocol layer's tests pin to the
// client's.
func IsRecoverable(err error) bool { return sdk.IsRecoverableStatus(err) }

// StartTask starts a task as the client does (reference 3.1.B): task schema
// and capabilities, allocation directory, log FIFOs with a collector,
// environment, config validation, StartTask. It checks the returned handle
// against the client's expectations and fails t on any problem. Tasks still
// alive at the end of the test are destroyed by the harness.
func (h *Harness) StartTask(t testing.TB, spec TaskSpec) *Task {
	t.Helper()
	task, err := h.TryStartTask(spec)
	if err != nil {
		var verr *ValidationError
		if errors.As(err, &verr) {
			t.Fatalf("harness: StartTask %s: task event \"Failed Validation\": %v", spec.Name, err)
		}
		t.Fatalf("harness: StartTask %s: %v", spec.Name, err)
	}
	return task
}

// TryStartTask is StartTask returning the error: a *ValidationError when the
// client would not even call the driver, else the driver's gRPC error
// (status.Code and IsRecoverable work on it) or a contract violation.
func (h *Harness) TryStartTask(spec TaskSpec) (*Task, error) {
	spec.setDefaults()
	h.mu.Lock()
	inst := h.inst
	h.mu.Unlock()
	if inst == nil || inst.dead() {
		return nil, errors.New("the plugin is not running (call Relaunch)")
	}
	ctx, cancel := h.ctx()
	defer cancel()
	schema, caps, err := h.taskPrelude(ctx, inst)
	if err != nil {
		return nil, err
	}
	task, cfg, err := h.prepareTask(&spec, caps)
	if err != nil {
		return nil, err
	}
	raw, err := encodeTaskConfig(schema, spec.Config, &hclspec.TaskEnv{Env: cfg.GetEnv(), Node: h.nodeVariables()})
	if err != nil {
		task.logs.close()
		return nil, &ValidationError{Err: err}
	}
	cfg.MsgpackDriverConfig = raw
	task.Config = cfg
	resp, err := inst.driver.StartTask(ctx, &driverpb.StartTaskRequest{Task: cfg})
	if err != nil {
		task.logs.close()
		return nil, fmt.Errorf("StartTask (task event \"Driver Failure\"): %w", err)
	}
	task.Handle, task.NetworkOverride = resp.GetHandle(), resp.GetNetworkOverride()
	if err := checkHandle(task.Handle, cfg); err != nil {
		// Keep the task so that cleanup still destroys it.
		task.Handle = &driverpb.TaskHandle{Version: 1, Config: cfg, State: driverpb.TaskState_RUNNING}
		h.register(task)
		return nil, fmt.Errorf("driver contract: StartTask handle: %w", err)
	}
	h.register(task)
	return task, nil
}

// taskPrelude makes the calls a task runner makes before every start or
// restore: TaskConfigSchema and Capabilities.
func (h *Harness) taskPrelude(ctx context.Context, inst *instance) (*hclspecpb.Spec, *driverpb.DriverCapabilities, error) {
	schema, err := inst.driver.TaskConfigSchema(ctx, &driverpb.TaskConfigSchemaRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("TaskConfigSchema: %w", err)
	}
	if schema.GetSpec() == nil {
		return nil, nil, errors.New("driver contract: TaskConfigSchema returned no spec, so every task of this driver fails")
	}
	caps, err := inst.driver.Capabilities(ctx, &driverpb.CapabilitiesRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("Capabilities: %w", err)
	}
	return schema.GetSpec(), caps.GetCapabilities(), nil
}

// prepareTask builds the allocation directory, the log FIFOs and the
// TaskConfig (without the driver config).
func (h *Harness) prepareTask(spec *TaskSpec, caps *driverpb.DriverCapabilities) (*Task, *driverpb.TaskConfig, error) {
	dirs, err := buildAllocDir(h.allocDir, spec.AllocID, spec.Name)
	if err != nil {
		return nil, nil, err
	}
	if err := writeTaskFiles(dirs.taskDir, spec); err != nil {
		return nil, nil, err
	}
	task := &Task{
		ID:       newTaskID(spec.AllocID, spec.Name),
		AllocID:  spec.AllocID,
		Name:     spec.Name,
		AllocDir: dirs.root,
		TaskDir:  dirs.taskDir,
	}
	stdout := filepath.Join(dirs.logs, "."+spec.Name+".stdout.fifo")
	stderr := filepath.Join(dirs.logs, "."+spec.Name+".stderr.fifo")
	switch {
	case spec.LogsDisabled:
		stdout, stderr = os.DevNull, os.DevNull
		task.logs = &taskLogs{}
	case caps.GetDisableLogCollection():
		// Paths are filled in but no FIFO exists (reference 3.5).
		task.logs = &taskLogs{}
	default:
		if task.logs, err = newTaskLogs(dirs.logs, spec.Name); err != nil {
			return nil, nil, err
		}
	}
	env := buildTaskEnv(envInput{
		spec: spec, allocID: spec.AllocID, dirs: dirs, fs: caps.GetFsIsolation(),
		nodeID: h.nodeID, nodeName: h.nodeName, hostEnv: !h.opts.NoHostEnv,
	})
	deviceEnv := map[string]string{}
	for k, v := range spec.DeviceEnv {
		env[k], deviceEnv[k] = v, v
	}
	cfg := &driverpb.TaskConfig{
		Id:            task.ID,
		Name:          spec.Name,
		Env:           env,
		DeviceEnv:     deviceEnv,
		Resources:     buildResources(spec),
		User:          spec.User,
		AllocDir:      dirs.root,
		StdoutPath:    stdout,
		StderrPath:    stderr,
		TaskGroupName: spec.Group,
		JobName:       spec.JobName,
		AllocId:       spec.AllocID,
		JobId:         spec.JobID,
		Namespace:     spec.Namespace,
		NodeName:      h.nodeName,
		NodeId:        h.nodeID,
	}
	return task, cfg, nil
}

func writeTaskFiles(taskDir string, spec *TaskSpec) error {
	if spec.PayloadFile != "" {
		p := filepath.Join(taskDir, "local", spec.PayloadFile)
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			return fmt.Errorf("write dispatch payload: %w", err)
		}
		if err := os.WriteFile(p, spec.Payload, 0o777); err != nil {
			return fmt.Errorf("write dispatch payload: %w", err)
		}
	}
	for name, data := range spec.Files {
		p := filepath.Join(taskDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write task file %s: %w", name, err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return fmt.Errorf("write task file %s: %w", name, err)
		}
	}
	return nil
}

func buildResources(s *TaskSpec) *driverpb.Resources {
	limit := max(s.MemoryMB, s.MemoryMaxMB)
	r := &driverpb.Resources{
		AllocatedResources: &driverpb.AllocatedTaskResources{
			Cpu:    &driverpb.AllocatedCpuResources{CpuShares: s.CPU},
			Memory: &driverpb.AllocatedMemoryResources{MemoryMb: s.MemoryMB, MemoryMaxMb: s.MemoryMaxMB},
		},
		LinuxResources: &driverpb.LinuxResources{
			CpuShares:        s.CPU,
			MemoryLimitBytes: limit * 1024 * 1024,
			CpusetCpus:       s.Cores,
			// A node with 4000 MHz of usable compute.
			PercentTicks: float64(s.CPU) / 4000,
		},
	}
	for _, p := range s.Ports {
		ip := p.HostIP
		if ip == "" {
			ip = "127.0.0.1"
		}
		r.Ports = append(r.Ports, &driverpb.PortMapping{Label: p.Label, Value: p.Value, To: p.To, HostIp: ip})
	}
	return r
}

// checkHandle applies what the client relies on in a StartTask handle
// (reference 3.8).
func checkHandle(hd *driverpb.TaskHandle, sent *driverpb.TaskConfig) error {
	switch {
	case hd == nil:
		return errors.New("no handle returned")
	case hd.GetConfig() == nil:
		return errors.New("handle.config is unset: the client would treat the task as nothing to recover")
	case hd.GetConfig().GetId() != sent.GetId():
		return fmt.Errorf("handle.config.id is %q, want the request's %q", hd.GetConfig().GetId(), sent.GetId())
	case hd.GetVersion() < 1:
		return fmt.Errorf("handle.version is %d, want >= 1 (0 denotes a pre-0.9 handle)", hd.GetVersion())
	}
	return nil
}

func (h *Harness) register(task *Task) {
	h.mu.Lock()
	h.tasks[task.ID] = task
	h.mu.Unlock()
}

// recoverRequest builds RecoverTask's request from a stored handle. After a
// client restart the handle comes from the state DB, which does not keep
// msgpack_driver_config; task_id is never set by the client.
func recoverRequest(handle *driverpb.TaskHandle, afterClientRestart bool) *driverpb.RecoverTaskRequest {
	hd, _ := proto.Clone(handle).(*driverpb.TaskHandle)
	if afterClientRestart && hd.GetConfig() != nil {
		hd.Config.MsgpackDriverConfig = nil
	}
	return &driverpb.RecoverTaskRequest{Handle: hd}
}

// RecoverTask re-attaches the running plugin to task as the client does at
// start-up after a restart (reference 3.1.H): TaskConfigSchema,
// Capabilities, then RecoverTask with the stored handle whose
// msgpack_driver_config is cleared. Afterwards WaitTask, StopTask, ... work
// on task.ID again.
func (h *Harness) RecoverTask(t testing.TB, task *Task) {
	t.Helper()
	if err := h.TryRecoverTask(task); err != nil {
		t.Fatalf("harness: RecoverTask %s: %v", task.ID, err)
	}
}

// RecoverTaskInMemory is RecoverTask as the client does it after the plugin
// crashed while the client kept running (reference 3.1.J): the handle still
// carries msgpack_driver_config.
func (h *Harness) RecoverTaskInMemory(t testing.TB, task *Task) {
	t.Helper()
	if err := h.tryRecover(task, false); err != nil {
		t.Fatalf("harness: RecoverTask (in-memory handle) %s: %v", task.ID, err)
	}
}

// TryRecoverTask is RecoverTask returning the driver's error, e.g. to check
// that recovering a task that no longer exists fails.
func (h *Harness) TryRecoverTask(task *Task) error {
	return h.tryRecover(task, true)
}

func (h *Harness) tryRecover(task *Task, afterClientRestart bool) error {
	h.mu.Lock()
	inst := h.inst
	h.mu.Unlock()
	if inst == nil || inst.dead() {
		return errors.New("the plugin is not running (call Relaunch)")
	}
	ctx, cancel := h.ctx()
	defer cancel()
	if _, _, err := h.taskPrelude(ctx, inst); err != nil {
		return err
	}
	if _, err := inst.driver.RecoverTask(ctx, recoverRequest(task.Handle, afterClientRestart)); err != nil {
		return fmt.Errorf("RecoverTask: %w", err)
	}
	return nil
}
