// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Task is the task of one placed allocation, as a Nomad client would get
// it: the task definition, the dispatched job's meta and its payload.
type Task struct {
	Namespace, JobID, ParentID, AllocID, TaskGroup string
	Task                                           *api.Task
	Meta                                           map[string]string
	// Payload is the dispatch payload (decoded). Nomad writes it to
	// local/<dispatch_payload.file> when the task asks for it.
	Payload []byte
}

// TaskRunner runs one allocation's task. It calls started once the task
// runs (the allocation becomes "running"), and returns the exit code, or
// an error if the task could not be run (a "Driver Failure" event; the
// allocation fails). ctx ends when the allocation is stopped (deregister)
// or the server closes; the allocation then completes as killed.
//
// The double models restart { attempts = 0 } and reschedule
// { attempts = 0 }: a failed allocation is never restarted or replaced.
type TaskRunner interface {
	RunTask(ctx context.Context, t Task, started func()) (exitCode int, err error)
}

// RecoverableError marks a task start error the driver reports as
// recoverable (Nomad's structs.RecoverableError): the restart policy then
// decides, and with restart { attempts = 0 } the task is not restarted
// ("Policy allows no restarts"). Other errors are unrecoverable ("Error
// was unrecoverable").
type RecoverableError struct{ Err error }

func (e *RecoverableError) Error() string { return e.Err.Error() }
func (e *RecoverableError) Unwrap() error { return e.Err }

// IsRecoverable reports whether err is (or wraps) a RecoverableError.
func IsRecoverable(err error) bool {
	var r *RecoverableError
	return errors.As(err, &r)
}

// TaskRunnerFunc adapts a function to TaskRunner.
type TaskRunnerFunc func(ctx context.Context, t Task, started func()) (int, error)

// RunTask calls f.
func (f TaskRunnerFunc) RunTask(ctx context.Context, t Task, started func()) (int, error) {
	return f(ctx, t, started)
}

// Placement decides whether the scheduler can place a job: nil places it on
// the one node; a metric is recorded as the evaluation's FailedTGAllocs
// and leaves a blocked evaluation, as Nomad does.
type Placement func(job *api.Job) *api.AllocationMetric

// NoNodeWithDriver is a cluster whose one node lacks the job's driver: the
// scheduler filters it with the "missing drivers" constraint.
func NoNodeWithDriver() Placement {
	return func(*api.Job) *api.AllocationMetric {
		return &api.AllocationMetric{
			NodesEvaluated: 1, NodesFiltered: 1, NodesInPool: 1, NodePool: "default",
			NodesAvailable:     map[string]int{NodeDC: 1},
			ConstraintFiltered: map[string]int{"missing drivers": 1},
		}
	}
}

// NoCapacity is a cluster whose one node has no room left in dimension
// (e.g. "memory", "cpu").
func NoCapacity(dimension string) Placement {
	return func(*api.Job) *api.AllocationMetric {
		return &api.AllocationMetric{
			NodesEvaluated: 1, NodesExhausted: 1, NodesInPool: 1, NodePool: "default",
			NodesAvailable:     map[string]int{NodeDC: 1},
			ClassExhausted:     map[string]int{},
			DimensionExhausted: map[string]int{dimension: 1},
		}
	}
}

// ProcessRunner runs each task as a local process, standing in for a Nomad
// client with a driver: it builds the task directory (local/, secrets/,
// tmp/), writes the dispatch payload to local/<dispatch_payload.file> as
// Nomad's dispatch hook does, and starts Command with Args.
//
// In Args and Env, ${NOMAD_TASK_DIR}, ${NOMAD_SECRETS_DIR}, ${NOMAD_ALLOC_ID},
// ${NOMAD_JOB_ID} and ${NOMAD_META_<key>} are replaced, and the same
// variables are set in the environment, like a subset of Nomad's task
// environment.
type ProcessRunner struct {
	// Dir holds one directory per allocation (a test's t.TempDir()).
	Dir     string
	Command string
	Args    []string
	Env     []string
	// Stdout and Stderr receive the task's output (default discarded).
	Stdout, Stderr io.Writer
	// KillTimeout is how long a stopped task has between its kill signal
	// and SIGKILL (default: the task's kill_timeout, else 5s).
	KillTimeout time.Duration
}

var _ TaskRunner = (*ProcessRunner)(nil)

// RunTask implements TaskRunner.
func (p *ProcessRunner) RunTask(ctx context.Context, t Task, started func()) (int, error) {
	taskDir := filepath.Join(p.Dir, t.AllocID, t.Task.Name)
	env, err := p.prepare(taskDir, t)
	if err != nil {
		return 0, err
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			for _, kv := range env {
				if name, v, _ := strings.Cut(kv, "="); name == k {
					return v
				}
			}
			return "${" + k + "}"
		})
	}
	cmd := exec.Command(p.Command, expandAll(p.Args, expand)...) //nolint:gosec // test double: the command is the test's
	cmd.Dir = taskDir
	cmd.Env = append(append(os.Environ(), env...), expandAll(p.Env, expand)...)
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if err := cmd.Start(); err != nil {
		// like raw_exec's launch failure: recoverable
		return 0, &RecoverableError{Err: fmt.Errorf("failed to start command %q: %w", p.Command, err)}
	}
	started()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Signal(killSignal(t.Task.KillSignal))
		kill := p.KillTimeout
		if kill <= 0 && t.Task.KillTimeout != nil {
			kill = *t.Task.KillTimeout
		}
		if kill <= 0 {
			kill = 5 * time.Second
		}
		t := time.NewTimer(kill)
		defer t.Stop()
		select {
		case err = <-done:
		case <-t.C:
			_ = cmd.Process.Kill()
			err = <-done
		}
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		// Nomad's executor reports a process a signal ended as exit
		// code 128 + signal
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("failed to wait for command %q: %w", p.Command, err)
	}
	return 0, nil
}

// killSignal is the task's kill_signal; Nomad's default is SIGINT.
func killSignal(name string) syscall.Signal {
	switch strings.TrimPrefix(strings.ToUpper(name), "SIG") {
	case "TERM":
		return syscall.SIGTERM
	case "QUIT":
		return syscall.SIGQUIT
	case "HUP":
		return syscall.SIGHUP
	case "KILL":
		return syscall.SIGKILL
	case "USR1":
		return syscall.SIGUSR1
	case "USR2":
		return syscall.SIGUSR2
	default:
		return syscall.SIGINT
	}
}

func expandAll(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

// prepare builds the task directory, writes the payload and returns the
// task environment.
func (p *ProcessRunner) prepare(taskDir string, t Task) ([]string, error) {
	local, secrets := filepath.Join(taskDir, "local"), filepath.Join(taskDir, "secrets")
	for _, d := range []string{local, secrets, filepath.Join(taskDir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("failed to build task directory: %w", err)
		}
	}
	if dp := t.Task.DispatchPayload; dp != nil && dp.File != "" && len(t.Payload) > 0 {
		dst := filepath.Join(local, dp.File)
		if rel, err := filepath.Rel(local, dst); err != nil || strings.HasPrefix(rel, "..") {
			return nil, fmt.Errorf("dispatch_payload file %q escapes the task's local directory", dp.File)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("failed to write dispatch payload: %w", err)
		}
		// Nomad's dispatch hook asks for mode 0777; the process umask
		// applies (a real client with umask 022 leaves 0755, owned by
		// the user the client runs as).
		if err := os.WriteFile(dst, t.Payload, 0o777); err != nil { //nolint:gosec // Nomad's mode
			return nil, fmt.Errorf("failed to write dispatch payload: %w", err)
		}
	}
	env := []string{
		"NOMAD_TASK_DIR=" + local, "NOMAD_SECRETS_DIR=" + secrets, "NOMAD_ALLOC_ID=" + t.AllocID,
		"NOMAD_JOB_ID=" + t.JobID, "NOMAD_JOB_PARENT_ID=" + t.ParentID, "NOMAD_TASK_NAME=" + t.Task.Name,
		"NOMAD_GROUP_NAME=" + t.TaskGroup, "NOMAD_NAMESPACE=" + t.Namespace,
	}
	for k, v := range t.Meta {
		env = append(env, "NOMAD_META_"+k+"="+v)
	}
	return env, nil
}
