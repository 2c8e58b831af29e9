// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// ErrNotSupported is returned by a driver for an operation it does not offer.
// The gRPC adapter turns it into codes.Unimplemented, which is what Nomad's
// client expects for "not supported".
var ErrNotSupported = errors.New("operation not supported by this driver")

// ErrTaskNotFound is returned for a task ID the driver does not know. Nomad
// treats it as "the task is gone" (e.g. RecoverTask of a lost task).
var ErrTaskNotFound = errors.New("task not found")

// RecoverableError marks a StartTask failure that Nomad may retry on the same
// node (e.g. no VM slot free). The adapter attaches Nomad's RecoverableError
// status detail for it.
type RecoverableError struct{ Err error }

// Error is the wrapped error's text: Nomad shows it as the task's failure.
func (e *RecoverableError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *RecoverableError) Unwrap() error { return e.Err }

// NewRecoverableError wraps err so Nomad retries the start.
func NewRecoverableError(err error) error { return &RecoverableError{Err: err} }

// Driver is the Go-native contract of a Nomad task driver. Every method may be
// called concurrently for different tasks; Nomad uses one long-lived plugin
// process per driver name for all tasks of a node.
type Driver interface {
	// PluginInfo names the driver. Name must equal the binary's file name and
	// the agent's plugin block label.
	PluginInfo() PluginInfo
	// ConfigSchema is the schema of the agent's plugin "x" { config {} } block.
	ConfigSchema() *hclspec.Spec
	// SetConfig receives the plugin config. It may arrive twice in a row with
	// the same bytes and must be idempotent and free of side effects on tasks.
	SetConfig(cfg *PluginConfig) error
	// TaskConfigSchema is the schema of a task's config {} block.
	TaskConfigSchema() *hclspec.Spec
	// Capabilities advertises what the driver supports.
	Capabilities() *Capabilities
	// Fingerprint streams the driver's health and attributes. The first value
	// must be sent at once; the channel stays open until ctx ends.
	Fingerprint(ctx context.Context) (<-chan *Fingerprint, error)
	// StartTask starts a task and returns its handle, whose DriverState must
	// be enough to recover the task in a fresh plugin process.
	StartTask(ctx context.Context, cfg *TaskConfig) (*TaskHandle, error)
	// RecoverTask re-attaches to a running task after a plugin or agent
	// restart. The handle's Config.ID is the task ID; Config.RawDriverConfig
	// is empty after an agent restart. Idempotent.
	RecoverTask(ctx context.Context, handle *TaskHandle) error
	// WaitTask returns a channel that yields the exit result once. It may be
	// called several times and after the task has exited.
	WaitTask(ctx context.Context, taskID string) (<-chan *ExitResult, error)
	// StopTask sends signal (empty means the driver's default) and waits
	// timeout for the task to exit before killing it.
	StopTask(ctx context.Context, taskID string, timeout time.Duration, signal string) error
	// DestroyTask releases everything the task holds. With force it kills a
	// running task first; without force a running task is an error.
	DestroyTask(ctx context.Context, taskID string, force bool) error
	// InspectTask reports the task's status.
	InspectTask(ctx context.Context, taskID string) (*TaskStatus, error)
	// TaskStats streams resource usage every interval until ctx ends.
	TaskStats(ctx context.Context, taskID string, interval time.Duration) (<-chan *TaskResourceUsage, error)
	// TaskEvents streams driver events for all tasks until ctx ends.
	TaskEvents(ctx context.Context) (<-chan *TaskEvent, error)
	// SignalTask delivers a signal (e.g. "SIGHUP") to the task.
	SignalTask(ctx context.Context, taskID string, signal string) error
	// ExecTask runs a command in the task's context and returns its output.
	ExecTask(ctx context.Context, taskID string, cmd []string, timeout time.Duration) (*ExecResult, error)
}

// ExecStreamer is implemented by drivers that support `nomad alloc exec`.
type ExecStreamer interface {
	// ExecTaskStreaming runs opts.Command with the given streams and returns
	// its exit result. A nil error with a non-zero exit code is normal.
	ExecTaskStreaming(ctx context.Context, taskID string, opts *ExecOptions) (*ExitResult, error)
}

// Initializer is implemented by drivers that want Nomad's Init call (2.0.4+).
type Initializer interface {
	// Init is called after SetConfig in the long-lived plugin process,
	// before its streams open.
	Init(ctx context.Context) error
}

// Shutdowner is implemented by drivers that want Nomad's Shutdown call, made
// before a graceful agent shutdown kills the plugin (2.0.4+). Tasks must keep
// running.
type Shutdowner interface {
	// Shutdown releases what the plugin process holds, never the tasks;
	// ctx carries Nomad's short deadline.
	Shutdown(ctx context.Context) error
}

// PluginInfo is what the driver reports in PluginInfo.
type PluginInfo struct {
	Name    string // driver name, e.g. "tart"
	Version string // semver of the plugin
}

// PluginConfig is what SetConfig receives.
type PluginConfig struct {
	// RawConfig is the msgpack-encoded cty value of the plugin config block,
	// as Nomad sends it. Decode it with hclspec.Decode and the driver's
	// ConfigSchema. Empty when the agent has no config block.
	RawConfig []byte
	// Agent is set only in the long-lived client process.
	Agent *AgentConfig
	// APIVersion is the negotiated plugin API version ("v0.1.0").
	APIVersion string
}

// AgentConfig is the part of the agent configuration Nomad shares with drivers.
type AgentConfig struct {
	ClientMaxPort, ClientMinPort uint32
}

// FSIsolation is the filesystem isolation a driver provides.
type FSIsolation int

// Filesystem isolation modes (values match Nomad's enum).
const (
	FSIsolationNone   FSIsolation = 0
	FSIsolationChroot FSIsolation = 1
	FSIsolationImage  FSIsolation = 2
	FSIsolationUnveil FSIsolation = 3
)

// NetworkIsolationMode matches Nomad's NetworkIsolationSpec enum.
type NetworkIsolationMode int

// Network isolation modes (values match Nomad's enum).
const (
	NetIsolationHost  NetworkIsolationMode = 0
	NetIsolationGroup NetworkIsolationMode = 1
	NetIsolationTask  NetworkIsolationMode = 2
	NetIsolationNone  NetworkIsolationMode = 3
)

// MountConfigSupport matches Nomad's DriverCapabilities.MountConfigs enum.
type MountConfigSupport int

// Mount config support levels (values match Nomad's enum).
const (
	MountConfigSupportAll  MountConfigSupport = 0 // UNKNOWN_MOUNTS/ANY_MOUNTS
	MountConfigSupportNone MountConfigSupport = 1
)

// Capabilities advertises what a driver supports.
type Capabilities struct {
	SendSignals          bool
	Exec                 bool
	FSIsolation          FSIsolation
	NetIsolationModes    []NetworkIsolationMode
	MustInitiateNetwork  bool
	MountConfigs         MountConfigSupport
	DisableLogCollection bool
	DynamicWorkloadUsers bool
}

// HealthState of a fingerprint.
type HealthState int

// Health states (values match Nomad's enum).
const (
	HealthStateUndetected HealthState = 0
	HealthStateUnhealthy  HealthState = 1
	HealthStateHealthy    HealthState = 2
)

// Fingerprint is one value of the Fingerprint stream.
type Fingerprint struct {
	Health            HealthState
	HealthDescription string
	// Attributes are sent as Nomad attributes; keys must be prefixed with
	// "driver.<name>.". Values are string, int64, float64 or bool.
	Attributes map[string]any
}

// Resources are the resources Nomad allocated to a task.
type Resources struct {
	CPUShares        int64 // MHz
	MemoryMB         int64
	MemoryMaxMB      int64
	MemoryLimitBytes int64
	CPUSetCPUs       string
	PercentTicks     float64
	Ports            []PortMapping
}

// PortMapping is a group-level allocated port.
type PortMapping struct {
	Label  string
	Value  int32
	To     int32
	HostIP string
}

// Mount is a volume mount requested by the job.
type Mount struct {
	TaskPath, HostPath string
	Readonly           bool
	// PropagationMode is "private", "host-to-task" or "bidirectional".
	PropagationMode string
}

// TaskConfig is what Nomad sends in StartTask (and echoes back in a handle).
type TaskConfig struct {
	ID        string // <alloc_id>/<task>/<random>; unique per start attempt
	Name      string
	JobName   string
	JobID     string
	TaskGroup string
	Namespace string
	AllocID   string
	NodeName  string
	NodeID    string
	User      string

	Env       map[string]string
	DeviceEnv map[string]string
	Resources *Resources
	Mounts    []Mount

	AllocDir   string // host path of the allocation directory
	StdoutPath string // FIFO (or /dev/null) to write task stdout to
	StderrPath string

	// RawDriverConfig is the msgpack-encoded task config block; empty in
	// RecoverTask after an agent restart.
	RawDriverConfig []byte

	// wire keeps the protobuf message this config came from, so a handle
	// echoes every field Nomad sent, including ones we do not model.
	wire any
}

// TaskDir returns the host path of this task's directory (<alloc>/<task>).
func (c *TaskConfig) TaskDir() string { return c.AllocDir + "/" + c.Name }

// DecodeDriverConfig decodes RawDriverConfig into out using the task schema.
func (c *TaskConfig) DecodeDriverConfig(spec *hclspec.Spec, out any) error {
	return hclspec.Decode(spec, c.RawDriverConfig, out)
}

// TaskState is the coarse state in a handle or status.
type TaskState int

// Task states (values match Nomad's enum).
const (
	TaskStateUnknown TaskState = 0
	TaskStateRunning TaskState = 1
	TaskStateExited  TaskState = 2
)

// TaskHandle is what Nomad stores for a task and returns in RecoverTask.
type TaskHandle struct {
	Version     int // version of the DriverState format, >= 1
	Config      *TaskConfig
	State       TaskState
	DriverState []byte // opaque, self-sufficient
}

// ExitResult is how a task ended.
type ExitResult struct {
	ExitCode  int
	Signal    int
	OOMKilled bool
	// Err reports that the driver could not determine the result.
	Err error
}

// Successful reports a clean exit.
func (r *ExitResult) Successful() bool {
	return r.ExitCode == 0 && r.Signal == 0 && r.Err == nil
}

// TaskStatus is the answer to InspectTask.
type TaskStatus struct {
	ID               string
	Name             string
	State            TaskState
	StartedAt        time.Time
	CompletedAt      time.Time
	ExitResult       *ExitResult
	DriverAttributes map[string]string
}

// TaskResourceUsage is one stats sample. Timestamp is required by Nomad;
// the adapter fills time.Now() when zero.
type TaskResourceUsage struct {
	Timestamp time.Time
	CPU       CPUUsage
	Memory    MemoryUsage
}

// CPUUsage of a task. Measured lists what was really measured, using
// Nomad's field names: "System Mode", "User Mode", "Total Ticks", "Percent".
type CPUUsage struct {
	SystemMode, UserMode, TotalTicks, Percent float64
	Measured                                  []string
}

// MemoryUsage of a task. Measured uses Nomad's names: "RSS", "Cache",
// "Swap", "Usage", "Max Usage".
type MemoryUsage struct {
	RSS, Cache, Swap, Usage, MaxUsage uint64
	Measured                          []string
}

// TaskEvent is a driver event shown in `nomad alloc status`.
type TaskEvent struct {
	TaskID      string
	AllocID     string
	TaskName    string
	Timestamp   time.Time
	Message     string
	Annotations map[string]string
}

// ExecResult is the answer to ExecTask.
type ExecResult struct {
	ExitResult *ExitResult
	Stdout     []byte
	Stderr     []byte
}

// TerminalSize of an exec session's TTY.
type TerminalSize struct{ Height, Width int }

// ExecOptions describe a streaming exec session (`nomad alloc exec`).
type ExecOptions struct {
	Command []string
	Tty     bool
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	// ResizeCh carries terminal resizes when Tty is set.
	ResizeCh <-chan TerminalSize
}
