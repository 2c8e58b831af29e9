// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
)

// procSample is one reading of a process: CPU seconds used so far (user,
// system) and resident memory.
type procSample struct {
	user, system float64 // seconds
	rss          uint64  // bytes
}

// TaskStats streams, every interval, the CPU and memory of the host
// processes behind the task: the VM's tart run (found from the lock on its
// config.json), the supervisor and its tart exec. On macOS a VM's memory is
// accounted to Apple's Virtualization XPC process, which these numbers do
// not include. The stream ends when the task exits or ctx ends.
func (d *Driver) TaskStats(ctx context.Context, taskID string, interval time.Duration) (<-chan *sdk.TaskResourceUsage, error) {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil, fmt.Errorf("stats of task %s: %w", taskID, sdk.ErrTaskNotFound)
	}
	if interval <= 0 {
		interval = time.Second
	}
	ch := make(chan *sdk.TaskResourceUsage)
	go d.statsLoop(ctx, h, interval, ch) // owned by ctx and the task's exit
	return ch, nil
}

func (d *Driver) statsLoop(ctx context.Context, h *taskHandle, interval time.Duration, ch chan<- *sdk.TaskResourceUsage) {
	defer close(ch)
	rt := d.currentHost()
	var prev procSample
	prevAt := time.Time{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		now := time.Now()
		cur := sumSamples(h.pids(rt))
		u := &sdk.TaskResourceUsage{Timestamp: now}
		u.Memory = sdk.MemoryUsage{RSS: cur.rss, Usage: cur.rss, Measured: []string{sdk.MeasuredRSS, sdk.MeasuredUsage}}
		if !prevAt.IsZero() {
			wall := now.Sub(prevAt).Seconds()
			user := max(cur.user-prev.user, 0) / wall * 100
			sys := max(cur.system-prev.system, 0) / wall * 100
			u.CPU = sdk.CPUUsage{UserMode: user, SystemMode: sys, Percent: user + sys,
				Measured: []string{sdk.MeasuredUserMode, sdk.MeasuredSystemMode, sdk.MeasuredPercent}}
		}
		prev, prevAt = cur, now
		select {
		case ch <- u:
		case <-ctx.Done():
			return
		case <-h.exited:
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		case <-h.exited:
			return
		}
	}
}

// pids returns the live processes behind the task's VM.
func (h *taskHandle) pids(rt *tartHost) []int {
	var out []int
	if rt != nil {
		if pid := lockHolder(filepath.Join(rt.client.VMDir(h.state.VMName), "config.json")); pid > 0 {
			out = append(out, pid)
		}
	}
	if supervisor.Alive(h.state.StateDir) {
		out = append(out, h.state.SupervisorPID, h.state.ExecPID)
	}
	return out
}

func sumSamples(pids []int) procSample {
	var total procSample
	for _, s := range sampleProcs(pids) {
		total.user += s.user
		total.system += s.system
		total.rss += s.rss
	}
	return total
}

// lockHolder returns the PID holding a POSIX write lock on path (tart run
// holds one on its VM's config.json while the VM runs), or 0.
func lockHolder(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk); err != nil || lk.Type == syscall.F_UNLCK {
		return 0
	}
	return int(lk.Pid)
}

// psTime parses ps's [[dd-]hh:]mm:ss[.cc] into seconds.
func psTime(s string) float64 {
	days := 0.0
	if i := strings.IndexByte(s, '-'); i >= 0 {
		d, _ := strconv.ParseFloat(s[:i], 64)
		days, s = d, s[i+1:]
	}
	total := 0.0
	for _, part := range strings.Split(s, ":") {
		v, _ := strconv.ParseFloat(part, 64)
		total = total*60 + v
	}
	return days*86400 + total
}
