// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"fmt"
	"os"
	"path/filepath"
)

// allocDirs are the host paths of one allocation directory, laid out as
// Nomad's client builds it before StartTask (reference 3.5).
type allocDirs struct {
	root    string // <client alloc_dir>/<alloc_id> = TaskConfig.alloc_dir
	shared  string // alloc/
	logs    string // alloc/logs
	taskDir string // <task>/
}

// buildAllocDir creates the allocation's shared directories (if missing) and
// the task's own directories. It is idempotent, so several tasks can share an
// allocation.
func buildAllocDir(clientAllocDir, allocID, task string) (allocDirs, error) {
	root := filepath.Join(clientAllocDir, allocID)
	d := allocDirs{
		root:    root,
		shared:  filepath.Join(root, "alloc"),
		logs:    filepath.Join(root, "alloc", "logs"),
		taskDir: filepath.Join(root, task),
	}
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{root, 0o755},
		{d.shared, 0o755},
		{filepath.Join(d.shared, "data"), 0o755},
		{d.logs, 0o755},
		{filepath.Join(d.shared, "tmp"), 0o777 | os.ModeSticky},
		{d.taskDir, 0o755},
		{filepath.Join(d.taskDir, "local"), 0o777},
		{filepath.Join(d.taskDir, "secrets"), 0o777},
		{filepath.Join(d.taskDir, "private"), 0o700},
		{filepath.Join(d.taskDir, "tmp"), 0o777 | os.ModeSticky},
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir.path, 0o755); err != nil {
			return allocDirs{}, fmt.Errorf("create allocation directory %s: %w", dir.path, err)
		}
		// MkdirAll applies the umask; Nomad sets the modes explicitly.
		if err := os.Chmod(dir.path, dir.mode); err != nil {
			return allocDirs{}, fmt.Errorf("set mode of allocation directory %s: %w", dir.path, err)
		}
	}
	return d, nil
}
