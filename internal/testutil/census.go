// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testutil

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
)

// CensusScope says what one test created, so a census counts only that:
// other engineers' tests run beside it on the same machine and engine.
type CensusScope struct {
	// TartHome: processes whose environment has TART_HOME=<it> (or a
	// directory inside it) or whose command line names a path inside it,
	// and the VMs in <it>/vms.
	TartHome string
	// KeepVMs are VM names in TartHome that are expected (base images,
	// warm VMs a process deliberately keeps for the next one).
	KeepVMs []string
	// Parents: live processes whose parent is one of these PIDs.
	Parents []int
	// Docker and DockerLabels: containers and volumes carrying all labels.
	Docker       *client.Client
	DockerLabels map[string]string
	// TempDirs: entries found inside these directories.
	TempDirs []string
	// Exclude are PIDs never counted (a process the test keeps on purpose,
	// such as a live plugin whose environment names TartHome).
	Exclude []int
}

// Census is what a CensusScope found.
type Census struct {
	Processes  []string // "pid: cmdline"
	VMs        []string
	Containers []string
	Volumes    []string
	TempFiles  []string
}

// Empty reports whether nothing was found.
func (c Census) Empty() bool {
	return len(c.Processes)+len(c.VMs)+len(c.Containers)+len(c.Volumes)+len(c.TempFiles) == 0
}

func (c Census) String() string {
	var b strings.Builder
	for _, part := range []struct {
		name string
		xs   []string
	}{{"processes", c.Processes}, {"vms", c.VMs}, {"containers", c.Containers}, {"volumes", c.Volumes}, {"temp files", c.TempFiles}} {
		if len(part.xs) > 0 {
			fmt.Fprintf(&b, "%s (%d):\n  %s\n", part.name, len(part.xs), strings.Join(part.xs, "\n  "))
		}
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return b.String()
}

// TakeCensus counts what s names now. Processes are read from /proc
// (Linux); the test process itself is never counted.
func TakeCensus(t testing.TB, s CensusScope) Census {
	t.Helper()
	var c Census
	c.Processes = scopedProcesses(s)
	if s.TartHome != "" {
		entries, _ := os.ReadDir(filepath.Join(s.TartHome, "vms"))
		for _, e := range entries {
			if !slices.Contains(s.KeepVMs, e.Name()) {
				c.VMs = append(c.VMs, e.Name())
			}
		}
	}
	if s.Docker != nil && len(s.DockerLabels) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs, err := s.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: LabelFilter(s.DockerLabels)})
		if err != nil {
			t.Fatalf("census: list containers: %v", err)
		}
		for _, ct := range cs {
			c.Containers = append(c.Containers, fmt.Sprintf("%s %v (%s)", ct.ID[:12], ct.Names, ct.State))
		}
		vs, err := s.Docker.VolumeList(ctx, volume.ListOptions{Filters: LabelFilter(s.DockerLabels)})
		if err != nil {
			t.Fatalf("census: list volumes: %v", err)
		}
		for _, v := range vs.Volumes {
			c.Volumes = append(c.Volumes, v.Name)
		}
	}
	for _, d := range s.TempDirs {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			c.TempFiles = append(c.TempFiles, filepath.Join(d, e.Name()))
		}
	}
	return c
}

// AssertCensusEmpty polls until the census of s is empty (processes take a
// moment to be reaped) and fails the test with what is left after within.
func AssertCensusEmpty(t testing.TB, s CensusScope, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c := TakeCensus(t, s)
		if c.Empty() {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("census not empty after %s:\n%s", within, c)
			return
		}
		time.Sleep(50 * time.Millisecond) // poll interval; within bounds the failure
	}
}

// KillScopedProcesses SIGKILLs every process the census of s finds (for a
// test's cleanup after it has failed; never use it to make a census pass).
func KillScopedProcesses(s CensusScope) {
	for _, p := range scopedProcesses(s) {
		pid, _ := strconv.Atoi(strings.SplitN(p, ":", 2)[0])
		if pid > 0 {
			_ = killPID(pid)
		}
	}
}

func scopedProcesses(s CensusScope) []string {
	if s.TartHome == "" && len(s.Parents) == 0 {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || slices.Contains(s.Exclude, pid) {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue // zombies are reaped by their parent, not leaks of ours
		}
		ppid, _ := strconv.Atoi(f[1])
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		cmd := strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
		match := slices.Contains(s.Parents, ppid)
		if !match && s.TartHome != "" {
			env, _ := os.ReadFile(filepath.Join(dir, "environ"))
			env = append(append([]byte{0}, env...), 0)
			match = bytes.Contains(env, []byte("\x00TART_HOME="+s.TartHome+"\x00")) ||
				bytes.Contains(env, []byte("\x00TART_HOME="+s.TartHome+"/")) ||
				strings.Contains(cmd, s.TartHome+string(filepath.Separator))
		}
		if match {
			out = append(out, fmt.Sprintf("%d: %s", pid, cmd))
		}
	}
	return out
}
