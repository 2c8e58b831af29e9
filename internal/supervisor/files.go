// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Files of a state directory.
const (
	SpecFile    = "spec.json"
	ExitFile    = "exit.json"
	LogFile     = "supervisor.log"
	lockFile    = "supervisor.lck"
	controlFile = "control"
	// legacyLockFile is the flock file of supervisors started by releases
	// before this package (driver only); they are still probed so an
	// upgrade does not take their tasks for dead.
	legacyLockFile = "supervisor.lock"
)

// Spec is what a supervisor runs. It holds no secrets: those travel on the
// supervisor's stdin (Start's Stdin), which it forwards to tart exec before
// the contents of StdinFile.
type Spec struct {
	TartPath string   `json:"tart_path"`
	TartEnv  []string `json:"tart_env"`
	VM       string   `json:"vm"`
	// Argv is the guest argv.
	Argv       []string `json:"argv"`
	StdinFile  string   `json:"stdin_file,omitempty"`
	StdoutPath string   `json:"stdout_path"`
	StderrPath string   `json:"stderr_path"`
	// CreateOutput creates StdoutPath and StderrPath (appending) when they
	// do not exist; without it they must exist (Nomad's log FIFOs, which a
	// regular file must never replace).
	CreateOutput bool `json:"create_output,omitempty"`
	// TaskDir is opaque to the supervisor: the driver records the task's
	// allocation directory to tell stale state dirs from live ones.
	TaskDir string `json:"task_dir,omitempty"`
}

// Exit is the supervisor's record of how the guest command ended.
type Exit struct {
	ExitCode int `json:"exit_code"`
	Signal   int `json:"signal"`
	// Err is set when tart itself failed (VM gone, agent unreachable) or
	// the command could not start.
	Err string `json:"err,omitempty"`
	// Killed is true when the command was ended by Kill (or a SIGTERM to
	// the supervisor).
	Killed     bool      `json:"killed,omitempty"`
	FinishedAt time.Time `json:"finished_at"`
}

// ReadSpec reads a state directory's spec.
func ReadSpec(dir string) (Spec, error) {
	var s Spec
	b, err := os.ReadFile(filepath.Join(dir, SpecFile))
	if err != nil {
		return s, fmt.Errorf("read supervisor spec: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode supervisor spec in %s: %w", dir, err)
	}
	return s, nil
}

// ReadExit returns the recorded exit; ok is false while there is none.
func ReadExit(dir string) (e Exit, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, ExitFile))
	if errors.Is(err, os.ErrNotExist) {
		return Exit{}, false, nil
	}
	if err != nil {
		return Exit{}, false, fmt.Errorf("read exit status: %w", err)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return Exit{}, false, fmt.Errorf("decode exit status in %s: %w", dir, err)
	}
	return e, true, nil
}

// Alive reports whether a supervisor holds dir's lock. It tests the lock
// with F_GETLK and never takes it, so it cannot disturb a supervisor that
// is starting.
func Alive(dir string) bool {
	f, err := os.Open(filepath.Join(dir, lockFile))
	if err != nil {
		return legacyAlive(dir)
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != syscall.F_UNLCK
}

// legacyAlive probes the flock of a supervisor of an earlier release with a
// shared lock (such a supervisor is past its start, so nothing can race).
func legacyAlive(dir string) bool {
	f, err := os.Open(filepath.Join(dir, legacyLockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// lock takes the supervisor's record lock on dir. POSIX record locks are
// dropped by the kernel when the process dies, however it dies, and are not
// inherited by children (tart exec never holds it).
func lock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("another supervisor holds %s: %w", dir, err)
	}
	return f, nil
}
