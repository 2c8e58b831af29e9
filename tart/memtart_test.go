// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
)

// memTart is an in-memory, stateful stand-in for the tart CLI used by the
// pool unit tests: VMs live in a map (plus a config.json under home, which
// the client edits for MACs), tart run is a fakeProcess.
type memTart struct {
	t    *testing.T
	home string

	mu      sync.Mutex
	vms     map[string]*memVM
	images  map[string]bool
	limit   int
	counts  map[string]int // command -> calls
	failCmd map[string]string
	// agentAfter is how many exec attempts fail before the agent answers.
	agentAfter int
	// onExec, when set, runs at every tart exec of a VM (m.mu held), to
	// act as another process at that moment.
	onExec func(vm string)
	// slowRun makes tart run take the VM only later: until then the VM
	// reads as stopped (tart stop says "not running"), and the first
	// tart delete finds it running if its tart run is still alive.
	slowRun bool
}

type memVM struct {
	running bool
	// starting: tart run was spawned (slowRun) and has not taken the VM.
	starting bool
	proc     *fakeProcess
	execs    int
	cpu      int // set by tart set --cpu (0: the image's)
}

func newMemTart(t *testing.T) *memTart {
	return &memTart{t: t, home: t.TempDir(), vms: map[string]*memVM{}, images: map[string]bool{},
		limit: 2, counts: map[string]int{}, failCmd: map[string]string{}}
}

func (m *memTart) client() *Client { return NewClient(withRunner(m), WithHome(m.home)) }

func (m *memTart) count(cmd string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[cmd]
}

func (m *memTart) setFail(cmd, stderr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if stderr == "" {
		delete(m.failCmd, cmd)
	} else {
		m.failCmd[cmd] = stderr
	}
}

// names returns the local VM names, sorted.
func (m *memTart) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n []string
	for k := range m.vms {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func (m *memTart) running() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n []string
	for k, v := range m.vms {
		if v.running {
			n = append(n, k)
		}
	}
	sort.Strings(n)
	return n
}

// addVM creates a VM directly (state left by an earlier process).
func (m *memTart) addVM(name, mac string, running bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writeConfig(name, mac)
	m.vms[name] = &memVM{running: running, proc: &fakeProcess{done: make(chan struct{})}, execs: 1 << 20}
}

// markBuiltFor records in a VM's directory that it was booted for pool
// config c, as the pool does before tart run.
func (m *memTart) markBuiltFor(name string, c PoolConfig) {
	if err := writeBuiltFor(filepath.Join(m.home, "vms", name), builtForPool(c)); err != nil {
		m.t.Error(err)
	}
}

// cpuOf is the cpu count tart set gave a VM (0: never set).
func (m *memTart) cpuOf(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v := m.vms[name]; v != nil {
		return v.cpu
	}
	return -1
}

func (m *memTart) writeConfig(name, mac string) {
	dir := filepath.Join(m.home, "vms", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		m.t.Error(err)
	}
	b, _ := json.Marshal(map[string]any{"version": 1, "os": "darwin", "macAddress": mac})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		m.t.Error(err)
	}
}

func (m *memTart) Run(ctx context.Context, c command) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	code, out, errOut := m.handle(c.Args)
	if c.Stdout != nil {
		_, _ = io.WriteString(c.Stdout, out)
	}
	if c.Stderr != nil {
		_, _ = io.WriteString(c.Stderr, errOut)
	}
	return code, nil
}

func (m *memTart) handle(a []string) (int, string, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts[a[0]]++
	if msg, ok := m.failCmd[a[0]]; ok {
		return 1, "", msg + "\n"
	}
	notExist := func(n string) (int, string, string) {
		return 2, "", fmt.Sprintf("the specified VM %q does not exist\n", n)
	}
	switch a[0] {
	case "list":
		type e struct {
			Source, Name, State string
			Running             bool
		}
		var out []e
		for _, n := range sortedKeys(m.vms) {
			v := m.vms[n]
			st := "stopped"
			if v.running {
				st = "running"
			}
			out = append(out, e{"local", n, st, v.running})
		}
		for _, n := range sortedKeys(m.images) {
			out = append(out, e{"OCI", n, "stopped", false})
		}
		b, _ := json.Marshal(out)
		return 0, string(b), ""
	case "pull":
		m.images[normalizeRef(a[1])] = true
		return 0, "pulling " + a[1] + "...\npulling disk (1.0 GB compressed)...\n50%\n100%\n", ""
	case "clone":
		if !m.images[normalizeRef(a[1])] && m.vms[a[1]] == nil {
			return notExist(a[1])
		}
		m.writeConfig(a[2], "7e:00:00:00:00:01")
		m.vms[a[2]] = &memVM{}
		return 0, "", ""
	case "set":
		v := m.vms[a[1]]
		if v == nil {
			return notExist(a[1])
		}
		for i := 2; i+1 < len(a); i++ {
			if a[i] == "--cpu" {
				_, _ = fmt.Sscan(a[i+1], &v.cpu)
			}
		}
		return 0, "", ""
	case "exec":
		name := a[1]
		if a[1] == "-i" {
			name = a[2]
		}
		v := m.vms[name]
		switch {
		case v == nil:
			return notExist(name)
		case !v.running:
			return 2, "", fmt.Sprintf("VM %q is not running\n", name)
		}
		if m.onExec != nil {
			m.onExec(name)
		}
		v.execs++
		if v.execs <= m.agentAfter {
			return 1, "", "Failed to connect to the VM using its control socket: no, is the Tart Guest Agent running?\n"
		}
		return 0, "", ""
	case "stop":
		v := m.vms[a[1]]
		switch {
		case v == nil:
			return notExist(a[1])
		case !v.running:
			return 2, "", fmt.Sprintf("VM %q is not running\n", a[1])
		}
		v.running = false
		v.proc.exit(0)
		return 0, "", ""
	case "delete":
		for _, n := range a[1:] {
			v := m.vms[n]
			if v == nil {
				return notExist(n)
			}
			if v.starting {
				select {
				case <-v.proc.Done():
				default:
					v.starting, v.running = false, true // tart run took it just now
				}
			}
			if v.running {
				return 1, "", fmt.Sprintf("VM %q is running\n", n)
			}
			delete(m.vms, n)
			_ = os.RemoveAll(filepath.Join(m.home, "vms", n))
		}
		return 0, "", ""
	}
	return 64, "", "Error: unknown command " + a[0] + "\n"
}

func (m *memTart) Start(c command, o startOptions) (process, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counts["run"]++
	name := c.Args[1]
	p := &fakeProcess{done: make(chan struct{})}
	fail := func(msg string) (process, error) {
		_ = os.WriteFile(o.StdoutPath, []byte(msg+"\n"), 0o600)
		p.exit(1)
		return p, nil
	}
	if msg, ok := m.failCmd["run"]; ok {
		return fail(msg)
	}
	v := m.vms[name]
	if v == nil {
		return fail(fmt.Sprintf("Error: the specified VM %q does not exist", name))
	}
	if n, ok := ParseVMName(name); ok && n.Kind == KindPool {
		// The pool must record what a warm VM is built for before it
		// boots: a later Start deletes a ready warm VM without a record.
		if _, err := os.Stat(filepath.Join(m.home, "vms", name, specMarker)); err != nil {
			m.t.Errorf("tart run of warm vm %s before its %s was written: %v", name, specMarker, err)
		}
	}
	n := 0
	for _, x := range m.vms {
		if x.running {
			n++
		}
	}
	if n >= m.limit {
		return fail("The number of VMs exceeds the system limit")
	}
	if m.slowRun {
		v.starting, v.proc, v.execs = true, p, 0
		return p, nil
	}
	v.running, v.proc, v.execs = true, p, 0
	return p, nil
}

// crash ends a VM's tart run as if the VM died.
func (m *memTart) crash(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v := m.vms[name]; v != nil && v.running {
		v.running = false
		v.proc.exit(1)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
