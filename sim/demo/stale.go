// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// A demo's scratch directory (its TART_HOME, built binaries) is named
// scratchPrefix+random in the temp dir and holds scratchLock, flocked for
// the demo's whole life. A demo that was SIGKILLed cannot clean up; the
// next demo finds its directory unlocked and removes what it left.
const (
	scratchPrefix = "nomad-gha-scaleset-demo-"
	scratchLock   = "demo.lock"
	// staleMinAge protects a demo that has created its directory but not
	// yet locked it.
	staleMinAge = 10 * time.Second
)

// lockScratch takes the scratch directory's lock; closing the file
// releases it (as the kernel does when the demo dies).
func lockScratch(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, scratchLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to create the scratch lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("failed to lock the scratch directory: %w", err)
	}
	return f, nil
}

// sweepStale removes the scratch directories of demos that died without
// cleaning up: their runner supervisors are told to kill their commands,
// their VMs are stopped and deleted, then the directory goes. Directories
// of live demos (locked) are never touched.
func sweepStale(ctx context.Context, out io.Writer, self string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), scratchPrefix+"*"))
	for _, dir := range dirs {
		if dir == self {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, scratchLock))
		if err != nil || time.Since(fi.ModTime()) < staleMinAge {
			continue // not a demo of this version, or just created
		}
		lk, err := lockScratch(dir)
		if err != nil {
			continue // its demo is alive
		}
		n := cleanTartHome(ctx, dir)
		_ = lk.Close()
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(out, "==> failed to remove %s left by an earlier demo: %v\n", dir, err)
			continue
		}
		fmt.Fprintf(out, "==> removed what an earlier demo left in %s (%d VMs)\n", dir, n)
	}
}

// cleanTartHome ends the runner commands and deletes the VMs in a stale
// demo's TART_HOME, with the faketart binary that demo used when it built
// its own, and returns how many VMs it deleted.
func cleanTartHome(ctx context.Context, dir string) int {
	home := filepath.Join(dir, "tart-home")
	entries, err := os.ReadDir(filepath.Join(home, "vms"))
	if err != nil {
		return 0
	}
	bin := filepath.Join(dir, "faketart")
	if _, err := os.Stat(bin); err != nil {
		if bin, err = findBinary(ctx, "faketart", "", dir); err != nil {
			return 0
		}
	}
	client := tart.NewClient(tart.WithBinary(bin), tart.WithHome(home))
	n := 0
	for _, e := range entries {
		sdir := filepath.Join(home, "vms", e.Name(), "ntart-supervisor")
		if err := supervisor.Kill(sdir); err == nil {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _ = supervisor.Adopt(sdir).Wait(wctx)
			cancel()
		}
		if err := client.Destroy(ctx, e.Name(), time.Second); err != nil && !errors.Is(err, tart.ErrVMNotFound) {
			continue
		}
		n++
	}
	return n
}
