// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"encoding/json"
	"fmt"
	"time"
)

// taskHandleVersion is the version of the taskState format in a handle's
// driver_state. Bump it when taskState changes incompatibly, and keep
// decoding older versions.
const taskHandleVersion = 1

// taskState is what a task's handle carries (driver_state, JSON): enough
// for a fresh plugin process to re-attach to the task without cloning or
// booting anything. It holds no secrets: the task's environment and stdin
// payload are handed to the supervisor at start and never persisted here.
type taskState struct {
	TaskID   string `json:"task_id"`
	AllocID  string `json:"alloc_id"`
	TaskName string `json:"task_name"`
	// VMName is the tart VM running the task; Slot and MAC the VM slot it
	// holds; Pool is the pool it was claimed or resumed from ("" = a
	// cold start no pool fitted).
	VMName string `json:"vm_name"`
	Slot   int    `json:"slot"`
	MAC    string `json:"mac"`
	Pool   string `json:"pool,omitempty"`
	Warm   bool   `json:"warm"`
	// StartPath is how its VM was started: warm, resumed or cold.
	StartPath string `json:"start_path,omitempty"`
	// StateDir is the supervisor's directory (spec, lock, exit status).
	StateDir string `json:"state_dir"`
	// SupervisorPID is the detached supervisor; ExecPID its tart exec.
	SupervisorPID int       `json:"supervisor_pid"`
	ExecPID       int       `json:"exec_pid"`
	StartedAt     time.Time `json:"started_at"`
	TaskDir       string    `json:"task_dir"`
	// Config is the decoded task config (Nomad does not resend it after
	// an agent restart).
	Config TaskConfig `json:"config"`
}

func encodeState(s *taskState) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode driver state: %w", err)
	}
	return b, nil
}

func decodeState(version int, b []byte) (*taskState, error) {
	if version != taskHandleVersion {
		return nil, fmt.Errorf("driver state version %d is not supported (want %d)", version, taskHandleVersion)
	}
	var s taskState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode driver state: %w", err)
	}
	if s.VMName == "" || s.StateDir == "" {
		return nil, fmt.Errorf("decode driver state: vm_name and state_dir must be set")
	}
	return &s, nil
}
