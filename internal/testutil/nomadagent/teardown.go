// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadagent

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

// maxLogLines bounds the agent log printed for a failed test.
const maxLogLines = 3000

// teardown ends the agent and everything it spawned, then removes its
// directories. It runs from t.Cleanup; the log reaches the test output
// only when the test failed (or NOMADAGENT_LOGS is set, for debugging).
func (a *Agent) teardown(t testing.TB) {
	// The whole process group first (the agent and the plugins it
	// started), then everything else carrying the marker or running under
	// the agent's directory: supervisors (setsid), faketart, tasks.
	a.signal(syscall.SIGKILL, true, 30*time.Second)
	if left := a.killSpawned(15 * time.Second); len(left) > 0 {
		t.Errorf("nomadagent: processes of %s still alive after SIGKILL: %v", a.NodeName, left)
	}
	if a.opts.Docker {
		a.removeContainers(t)
	}
	if err := unmountUnder(a.root); err != nil {
		t.Errorf("nomadagent: unmount under %s: %v", a.root, err)
	}

	if t.Failed() || os.Getenv("NOMADAGENT_LOGS") != "" {
		// The tail only: a long DEBUG log would drown the failure.
		t.Logf("nomadagent: log of agent %s (last %d lines; the whole log is Agent.Logs):\n%s",
			a.NodeName, maxLogLines, tail(a.Logs(), maxLogLines))
	}
	// A caller's own TartHome is the caller's to remove.
	if err := os.RemoveAll(a.root); err != nil {
		t.Errorf("nomadagent: remove %s: %v", a.root, err)
	}
}

// Processes returns the PIDs of live processes this agent spawned, directly
// or not: every process whose environment holds the agent's marker, whose
// working directory or executable lies under the agent's directory (guest
// commands run in faketart's guest dirs with a clean environment).
func (a *Agent) Processes() []int {
	var pids []int
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	marker := []byte(MarkerEnv + "=" + a.marker + "\x00")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		if env, err := os.ReadFile(filepath.Join(dir, "environ")); err == nil && bytes.Contains(env, marker) {
			pids = append(pids, pid)
			continue
		}
		if under(readLink(filepath.Join(dir, "cwd")), a.root) || under(readLink(filepath.Join(dir, "exe")), a.root) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// PluginPIDs returns the PIDs of running plugin processes started from this
// agent's plugin_dir binary name (e.g. "nomad-driver-tart"). The driver's
// task supervisors run the same binary; they are told apart by argv.
func (a *Agent) PluginPIDs(name string) []int {
	exe := filepath.Join(a.PluginDir, name)
	var pids []int
	for _, pid := range a.Processes() {
		if strings.TrimSuffix(readLink("/proc/"+strconv.Itoa(pid)+"/exe"), " (deleted)") != exe {
			continue
		}
		argv, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if args := strings.Split(strings.TrimRight(string(argv), "\x00"), "\x00"); len(args) == 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}

func readLink(p string) string {
	s, err := os.Readlink(p)
	if err != nil {
		return ""
	}
	return s
}

func under(p, root string) bool {
	return p != "" && (p == root || strings.HasPrefix(p, root+"/"))
}

// killSpawned SIGKILLs the agent's processes until a census finds none (new
// ones may appear while their parents die) and returns those left at the
// deadline.
func (a *Agent) killSpawned(within time.Duration) []int {
	deadline := time.Now().Add(within)
	for {
		pids := a.Processes()
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return pids
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeContainers force-removes containers of Nomad's docker driver that
// mount anything under the agent's directory (its alloc dirs): they
// outlive a killed agent.
func (a *Agent) removeContainers(t testing.TB) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Errorf("nomadagent: docker client: %v", err)
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		t.Errorf("nomadagent: list containers: %v", err)
		return
	}
	for _, c := range list {
		if !slices.ContainsFunc(c.Mounts, func(m container.MountPoint) bool { return under(m.Source, a.root) }) {
			continue
		}
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil &&
			!cerrdefs.IsNotFound(err) {
			t.Errorf("nomadagent: remove container %s: %v", c.ID, err)
		}
	}
}

// Mounts returns the mount points under root, deepest first.
func Mounts(root string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if p := unescapeMount(fields[4]); under(p, root) {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	// Deepest first; a path mounted twice is unmounted twice.
	slices.SortStableFunc(points, func(x, y string) int { return strings.Count(y, "/") - strings.Count(x, "/") })
	return points, nil
}

// unescapeMount decodes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount under root, deepest first, until none
// is left (a lazy detach of a parent may reveal nothing more, but stacked
// mounts on one path need one unmount each).
func unmountUnder(root string) error {
	for range 10 {
		points, err := Mounts(root)
		if err != nil || len(points) == 0 {
			return err
		}
		for _, p := range points {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
		}
	}
	points, err := Mounts(root)
	if err == nil && len(points) > 0 {
		return &os.PathError{Op: "unmount", Path: points[0], Err: syscall.EBUSY}
	}
	return err
}
