// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

// TestSweepStale_stopsTheService: a demo killed with SIGKILL leaves its
// scratch directory unlocked and its service process running; the next
// demo stops that process (its command line names the directory) and
// removes the directory, and leaves a locked directory alone.
func TestSweepStale_stopsTheService(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	stale, err := os.MkdirTemp("", scratchPrefix)
	must.NoError(t, err)
	lock := filepath.Join(stale, scratchLock)
	must.NoError(t, os.WriteFile(lock, nil, 0o600))
	old := time.Now().Add(-time.Minute)
	must.NoError(t, os.Chtimes(lock, old, old))
	// stands in for the service: a process whose command line names the
	// directory, as `run --config <dir>/config.hcl` does
	svc := exec.Command("tail", "-f", lock)
	must.NoError(t, svc.Start())
	exited := make(chan struct{})
	go func() { _ = svc.Wait(); close(exited) }()
	t.Cleanup(func() { _ = svc.Process.Kill(); <-exited })
	must.NoError(t, os.WriteFile(filepath.Join(stale, servicePIDFile), []byte(strconv.Itoa(svc.Process.Pid)+"\n"), 0o600))

	live, err := os.MkdirTemp("", scratchPrefix)
	must.NoError(t, err)
	lk, err := lockScratch(live)
	must.NoError(t, err)
	t.Cleanup(func() { _ = lk.Close() })
	must.NoError(t, os.Chtimes(filepath.Join(live, scratchLock), old, old))

	var out bytes.Buffer
	sweepStale(t.Context(), &out, "")
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the stale demo's service was not stopped")
	}
	_, err = os.Stat(stale)
	must.True(t, os.IsNotExist(err), must.Sprint(out.String()))
	must.StrContains(t, out.String(), "removed what an earlier demo left in "+stale)
	_, err = os.Stat(live)
	must.NoError(t, err)
}
