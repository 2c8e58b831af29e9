// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tartbackend

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/atomicfile"
)

// Files a runner keeps in its VM's directory (deleted with the VM), so a
// restarted service can recover it.
const (
	runnerRecordFile = "ntart-runner.json"
	runnerLogFile    = "ntart-runner.log"
)

// record describes the runner a VM hosts. It never holds the JIT config.
type record struct {
	Runner    string    `json:"runner"`
	RunnerID  int       `json:"runner_id,omitempty"` // GitHub runner ID; 0 if unknown
	ScaleSet  string    `json:"scale_set"`
	CreatedAt time.Time `json:"created_at"`
}

func writeRecord(dir string, rec record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode runner record: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, runnerRecordFile), b, 0o600); err != nil {
		return fmt.Errorf("write runner record: %w", err)
	}
	return nil
}

func readRecord(dir string) (record, error) {
	var rec record
	b, err := os.ReadFile(filepath.Join(dir, runnerRecordFile))
	if err != nil {
		return rec, fmt.Errorf("read runner record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode runner record: %w", err)
	}
	return rec, nil
}

// supervisorDir is the runner command's supervisor state dir inside the VM
// directory (deleted with the VM, after the supervisor has ended).
func supervisorDir(vmDir string) string { return filepath.Join(vmDir, "ntart-supervisor") }
