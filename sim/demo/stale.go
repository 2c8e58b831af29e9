// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
// cleaning up: their service process is stopped, their runner supervisors
// are told to kill their commands, their VMs are stopped and deleted and
// their containers removed, then the directory goes. Directories of live
// demos (locked) are never touched.
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
		stopStaleService(dir)
		n := cleanTartHome(ctx, dir) + removeStaleContainers(ctx, dir)
		_ = lk.Close()
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(out, "==> failed to remove %s left by an earlier demo: %v\n", dir, err)
			continue
		}
		fmt.Fprintf(out, "==> removed what an earlier demo left in %s (%d runners)\n", dir, n)
	}
}

// cleanTartHome ends the runner commands and deletes the VMs in a stale
// demo's TART_HOME, with the faketart binary found as the demo finds it,
// and returns how many VMs it deleted.
func cleanTartHome(ctx context.Context, dir string) int {
	home := filepath.Join(dir, "tart-home")
	if _, err := os.Stat(filepath.Join(home, "vms")); err != nil {
		return 0
	}
	bin, err := findBinary("faketart", "")
	if err != nil {
		return 0
	}
	n, _ := removeTartVMs(ctx, bin, home)
	return n
}

// removeTartVMs ends the runner commands and deletes the runner VMs in
// TART_HOME (not the base) and returns how many it deleted.
func removeTartVMs(ctx context.Context, faketart, home string) (int, error) {
	names, err := tartVMs(home)
	if err != nil {
		return 0, err
	}
	client := tart.NewClient(tart.WithBinary(faketart), tart.WithHome(home))
	n := 0
	var errs []error
	for _, name := range names {
		sdir := filepath.Join(home, "vms", name, "ntart-supervisor")
		if err := supervisor.Kill(sdir); err == nil {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _ = supervisor.Adopt(sdir).Wait(wctx)
			cancel()
		}
		if err := client.Destroy(ctx, name, time.Second); err != nil && !errors.Is(err, tart.ErrVMNotFound) {
			errs = append(errs, fmt.Errorf("failed to delete VM %s: %w", name, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// removeStaleContainers removes the containers of a stale demo that used
// the Docker backend (labelled with its scratch directory's name).
func removeStaleContainers(ctx context.Context, dir string) int {
	cli, err := dockerReachable(ctx)
	if err != nil {
		return 0
	}
	defer cli.Close()
	n, _ := removeInstanceContainers(ctx, cli, filepath.Base(dir))
	return n
}

// stopStaleService stops the nomad-gha-scaleset process a stale demo
// started (its pid is in the scratch directory), checking on Linux that
// the pid still runs that demo's config before signalling it.
func stopStaleService(dir string) {
	b, err := os.ReadFile(filepath.Join(dir, servicePIDFile))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
		return // gone, or the pid now belongs to another program
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(serviceStopTimeout)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
