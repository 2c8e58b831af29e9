// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/faketart"
)

// These tests run the real execRunner against the faketart binary
// (sim/cmd/faketart), with TART_HOME in a temp dir and a seeded fake registry.

func TestMain(m *testing.M) {
	if os.Getenv("TART_TEST_HELPER") == "run-detached" {
		helperRunDetached()
		return
	}
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

const ftImage = "ghcr.io/test/macos:1"

type ftEnv struct {
	bin, home, registry string
	env                 []string
}

// newFT prepares a faketart environment; extra are FAKETART_* knobs.
// At cleanup it stops whatever still runs and fails the test if any VM is
// left in TART_HOME.
func newFT(t testing.TB, extra ...string) *ftEnv {
	t.Helper()
	e := &ftEnv{bin: testutil.BuildBinary(t, "./sim/cmd/faketart"), home: t.TempDir(), registry: t.TempDir()}
	e.env = append([]string{"FAKETART_REGISTRY=" + e.registry, "FAKETART_BOOT_DELAY=20ms",
		"FAKETART_EXEC_CONNECT_TIMEOUT=300ms", "FAKETART_SHUTDOWN_DELAY=10ms", "FAKETART_STOP_POLL_INTERVAL=10ms"}, extra...)
	cfg := faketart.VMConfig{Version: 1, OS: "darwin", Arch: "arm64", CPUCountMin: 2, CPUCount: 4,
		MemorySizeMin: 4 << 30, MemorySize: 8 << 30, MACAddress: "7e:00:00:00:00:01",
		Display: faketart.Display{Width: 1024, Height: 768}, DiskFormat: "raw"}
	must.NoError(t, faketart.SeedImage(e.registry, ftImage, cfg, faketart.ImageOptions{DiskSizeGB: 1, CompressedSize: 2_000_000_000}))
	t.Cleanup(func() {
		c := e.client()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		vms, err := c.List(ctx)
		if err != nil {
			t.Errorf("list at cleanup: %v", err)
			return
		}
		for _, v := range vms {
			if !v.IsLocal() {
				continue
			}
			t.Errorf("vm %s (%s) left behind", v.Name, v.State)
			_ = c.Destroy(ctx, v.Name, 0)
		}
	})
	return e
}

func (e *ftEnv) client(opts ...Option) *Client {
	return NewClient(append([]Option{WithBinary(e.bin), WithHome(e.home), WithEnv(e.env...)}, opts...)...)
}

func TestIntegration_Client_lifecycle(t *testing.T) {
	t.Parallel()
	e := newFT(t)
	c := e.client()
	ctx := t.Context()

	v, err := c.Version(ctx)
	must.NoError(t, err)
	must.Eq(t, "2.32.1", v)

	var progress []PullProgress
	pulled, err := c.EnsureImage(ctx, ftImage, PullOptions{Progress: func(p PullProgress) { progress = append(progress, p) }})
	must.NoError(t, err)
	must.True(t, pulled)
	last := progress[len(progress)-1]
	must.Eq(t, PullNVRAM, last.Phase)
	var sawHundred bool
	for _, p := range progress {
		if p.Phase == PullDisk && p.Percent == 100 {
			sawHundred = true
			must.Eq(t, uint64(2_000_000_000), p.TotalBytes)
			must.Eq(t, "Pulling image: 100% (1.9 GiB of 1.9 GiB)", p.String())
		}
	}
	must.True(t, sawHundred)
	pulled, err = c.EnsureImage(ctx, ftImage, PullOptions{})
	must.NoError(t, err)
	must.False(t, pulled, must.Sprint("cached now"))

	must.NoError(t, c.Clone(ctx, ftImage, "vm1"))
	t.Cleanup(func() { _ = c.Destroy(context.Background(), "vm1", 0) })
	must.NoError(t, c.Set(ctx, "vm1", SetOptions{CPU: 6, MemoryMiB: 8192, DiskSizeGB: 60}))
	must.NoError(t, c.setMACAddress("vm1", "2a:00:00:00:00:07"))
	d, err := c.Get(ctx, "vm1")
	must.NoError(t, err)
	must.Eq(t, 6, d.CPU)
	must.Eq(t, 8192, d.Memory)
	must.Eq(t, StateStopped, d.State)

	// Errors from the real binary.
	must.ErrorIs(t, c.Stop(ctx, "vm1", 0), ErrNotRunning)
	must.ErrorIs(t, c.Delete(ctx, "nope"), ErrVMNotFound)
	_, err = c.Exec(ctx, "vm1", []string{"true"}, ExecOptions{})
	must.ErrorIs(t, err, ErrNotRunning)

	h, err := c.Run(ctx, "vm1", RunOptions{Detached: true})
	must.NoError(t, err)
	// Detached: its own session, so its pgid is its pid, not ours.
	pgid, err := syscall.Getpgid(h.proc.Pid())
	must.NoError(t, err)
	must.Eq(t, h.proc.Pid(), pgid)
	must.NotEq(t, syscall.Getpgrp(), pgid)

	must.NoError(t, c.WaitReady(ctx, "vm1", ReadyOptions{Interval: 20 * time.Millisecond, Run: h}))
	mac, err := c.macAddress("vm1")
	must.NoError(t, err)
	must.Eq(t, "2a:00:00:00:00:07", mac)
	ip, err := c.IP(ctx, "vm1", IPOptions{Wait: 5 * time.Second})
	must.NoError(t, err)
	must.StrHasPrefix(t, "127.", ip)

	// exec: stdin in, stdout and stderr out, guest exit codes through.
	var stdout, stderr bytes.Buffer
	code, err := c.Exec(ctx, "vm1", []string{"/bin/sh", "-c", "cat; echo err >&2; exit 3"},
		ExecOptions{Stdin: strings.NewReader("jit-secret"), Stdout: &stdout, Stderr: &stderr})
	must.NoError(t, err)
	must.Eq(t, 3, code)
	must.Eq(t, "jit-secret", stdout.String())
	must.Eq(t, "err\n", stderr.String())
	code, err = c.Exec(ctx, "vm1", []string{"/bin/sh", "-c", "echo 'VM \"other\" is not running' >&2; exit 2"}, ExecOptions{})
	must.NoError(t, err)
	must.Eq(t, 2, code)

	vms, err := c.List(ctx)
	must.NoError(t, err)
	var found bool
	for _, v := range vms {
		if v.Name == "vm1" {
			found = true
			must.True(t, v.IsRunning())
		}
	}
	must.True(t, found)

	_, err = c.Run(ctx, "vm1", RunOptions{})
	must.NoError(t, err) // starts; tart run itself then fails
	must.ErrorIs(t, c.Delete(ctx, "vm1"), ErrVMRunning)

	must.NoError(t, c.Stop(ctx, "vm1", 5*time.Second))
	select {
	case <-h.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("tart run did not exit after stop")
	}
	must.NoError(t, h.Wait())
	must.NoError(t, c.Delete(ctx, "vm1"))
	_, err = os.Stat(filepath.Join(e.home, "vms", "vm1"))
	must.True(t, os.IsNotExist(err))
}

func TestIntegration_Client_runFailures(t *testing.T) {
	t.Parallel()
	e := newFT(t, "FAKETART_NO_AGENT=1")
	c := e.client()
	ctx := t.Context()

	h, err := c.Run(ctx, "missing", RunOptions{Detached: true, LogPath: filepath.Join(t.TempDir(), "run.log")})
	must.NoError(t, err)
	err = h.Wait()
	must.ErrorIs(t, err, ErrVMNotFound)
	must.ErrorContains(t, err, `the specified VM "missing" does not exist`)

	_, err = c.EnsureImage(ctx, "ghcr.io/test/nothing:1", PullOptions{})
	must.ErrorIs(t, err, ErrImageNotFound)

	// The VM limit: two darwin VMs run, the third fails.
	for _, n := range []string{"a", "b", "c"} {
		must.NoError(t, c.Clone(ctx, ftImage, n))
		t.Cleanup(func() { _ = c.Destroy(context.Background(), n, 0) })
	}
	ha, err := c.Run(ctx, "a", RunOptions{Detached: true})
	must.NoError(t, err)
	hb, err := c.Run(ctx, "b", RunOptions{Detached: true})
	must.NoError(t, err)
	// Agent never answers: WaitReady reports it when its context ends.
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	err = c.WaitReady(rctx, "a", ReadyOptions{Interval: 50 * time.Millisecond, Run: ha})
	cancel()
	must.ErrorIs(t, err, ErrAgentNotReady)
	waitFor(t, func() bool {
		d, err := c.Get(ctx, "b")
		return err == nil && d.State == StateRunning
	})
	hc, err := c.Run(ctx, "c", RunOptions{Detached: true})
	must.NoError(t, err)
	must.ErrorIs(t, hc.Wait(), ErrVMLimit)
	must.NoError(t, ha.Stop(ctx, 5*time.Second))
	must.NoError(t, c.Stop(ctx, "b", 5*time.Second))
	<-hb.Done()
}

func TestIntegration_Pool(t *testing.T) {
	// Not parallel: checkGoroutines counts the whole process.
	checkGoroutines(t)
	e := newFT(t)
	c := e.client()
	slots, err := NewSlots(2, "it-host")
	must.NoError(t, err)
	ev := &eventLog{}
	p, err := NewPool(c, slots, []PoolConfig{{Name: "mac", Size: 1, VMSpec: VMSpec{Image: ftImage, CPU: 4}}},
		PoolOptions{OnEvent: ev.add, ReadyInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second,
			BackoffMin: 50 * time.Millisecond, BootTimeout: 30 * time.Second})
	must.NoError(t, err)
	must.NoError(t, p.Start(t.Context()))
	t.Cleanup(func() { must.NoError(t, p.Shutdown(context.Background())) })
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })

	vm, err := p.claim(t.Context(), "task-1", VMSpec{Pool: "mac"})
	must.NoError(t, err)
	mac, err := c.macAddress(vm.Name)
	must.NoError(t, err)
	must.Eq(t, slots.mac(vm.Slot.Index), mac)
	var out bytes.Buffer
	code, err := c.Exec(t.Context(), vm.Name, []string{"cat"}, ExecOptions{Stdin: strings.NewReader("hello"), Stdout: &out})
	must.NoError(t, err)
	must.Eq(t, 0, code)
	must.Eq(t, "hello", out.String())

	// The pool refills into the second slot; a cold start then preempts it.
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
	cold, err := p.startVM(t.Context(), TaskVMName("t2"), VMSpec{Image: ftImage}, nil)
	must.NoError(t, err)
	must.Len(t, 1, ev.of(EventPreempted))
	must.NoError(t, p.Release(t.Context(), cold))
	must.NoError(t, p.Release(t.Context(), vm))
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
}

// helperRunDetached is the child side of TestIntegration_Run_detachedSurvivesSIGKILL:
// it starts a VM detached, prints tart run's pid and waits to be killed.
func helperRunDetached() {
	c := NewClient(WithBinary(os.Getenv("HELPER_TART")), WithHome(os.Getenv("HELPER_HOME")),
		WithEnv(strings.Split(os.Getenv("HELPER_ENV"), "\n")...))
	h, err := c.Run(context.Background(), "vm1", RunOptions{Detached: true})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println(h.proc.Pid())
	select {}
}

func TestIntegration_Run_detachedSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	e := newFT(t)
	c := e.client()
	ctx := t.Context()
	_, err := c.EnsureImage(ctx, ftImage, PullOptions{})
	must.NoError(t, err)
	must.NoError(t, c.Clone(ctx, ftImage, "vm1"))
	t.Cleanup(func() { _ = c.Destroy(context.Background(), "vm1", 0) })

	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), "TART_TEST_HELPER=run-detached", "HELPER_TART="+e.bin,
		"HELPER_HOME="+e.home, "HELPER_ENV="+strings.Join(e.env, "\n"))
	stdout, err := helper.StdoutPipe()
	must.NoError(t, err)
	must.NoError(t, helper.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	must.NoError(t, err)
	var pid int
	_, err = fmt.Sscan(line, &pid)
	must.NoError(t, err, must.Sprintf("helper said %q", line))

	// The caller dies hard; the VM must not.
	must.NoError(t, helper.Process.Kill())
	_ = helper.Wait()
	waitFor(t, func() bool {
		d, err := c.Get(ctx, "vm1")
		return err == nil && d.State == StateRunning
	})
	must.NoError(t, syscall.Kill(pid, 0), must.Sprint("tart run outlived its caller"))
	must.NoError(t, c.WaitReady(ctx, "vm1", ReadyOptions{Interval: 20 * time.Millisecond}))

	// Recovery: stop it through tart, as a restarted driver would.
	must.NoError(t, c.Stop(ctx, "vm1", 5*time.Second))
	waitFor(t, func() bool {
		d, err := c.Get(ctx, "vm1")
		return err == nil && d.State == StateStopped
	})
}

func TestIntegration_Pool_adoptsAfterRestart(t *testing.T) {
	// Not parallel: checkGoroutines counts the whole process.
	checkGoroutines(t)
	e := newFT(t)
	c := e.client()
	ctx := t.Context()
	slots, err := NewSlots(2, "it-host")
	must.NoError(t, err)
	_, err = c.EnsureImage(ctx, ftImage, PullOptions{})
	must.NoError(t, err)

	// State an earlier process left: a ready warm VM (detached), a stopped
	// warm VM, and somebody else's VM.
	warm, stale, foreign := poolVMName("mac", 1), poolVMName("mac", 0), "not-ours"
	for _, n := range []string{warm, stale, foreign} {
		must.NoError(t, c.Clone(ctx, ftImage, n))
	}
	t.Cleanup(func() { _ = c.Destroy(context.Background(), foreign, 0) })
	cfg := PoolConfig{Name: "mac", Size: 1, VMSpec: VMSpec{Image: ftImage}}
	must.NoError(t, writeBuiltFor(c.VMDir(warm), builtForPool(cfg)))
	must.NoError(t, c.setMACAddress(warm, slots.mac(1)))
	h, err := c.Run(ctx, warm, RunOptions{Detached: true})
	must.NoError(t, err)
	must.NoError(t, c.WaitReady(ctx, warm, ReadyOptions{Interval: 20 * time.Millisecond, Run: h}))

	ev := &eventLog{}
	p, err := NewPool(c, slots, []PoolConfig{cfg},
		PoolOptions{OnEvent: ev.add, ReadyInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second})
	must.NoError(t, err)
	must.NoError(t, p.Start(ctx))
	must.Len(t, 1, ev.of(EventAdopted))
	must.Eq(t, map[int]string{1: warm}, slots.ownerMap())
	vms, err := c.List(ctx)
	must.NoError(t, err)
	var names []string
	for _, v := range vms {
		if v.IsLocal() {
			names = append(names, v.Name)
		}
	}
	must.Eq(t, []string{foreign, warm}, names)
	vm, err := p.claim(ctx, "t", VMSpec{Pool: "mac"})
	must.NoError(t, err)
	must.Eq(t, warm, vm.Name)
	must.NoError(t, p.Release(ctx, vm))
	must.NoError(t, p.Shutdown(context.Background()))
	<-h.Done()
}

// TestIntegration_Pool_secondPoolLeavesBootInProgressAlone runs two pools
// on one TART_HOME, as Nomad briefly runs two plugin processes: the second
// must neither delete the VM the first is booting nor boot a replacement,
// and adopts it once it is ready.
func TestIntegration_Pool_secondPoolLeavesBootInProgressAlone(t *testing.T) {
	// Not parallel: checkGoroutines counts the whole process.
	checkGoroutines(t)
	e := newFT(t, "FAKETART_BOOT_DELAY=2s")
	ctx := t.Context()
	newPool := func(ev *eventLog) *Pool {
		slots, err := NewSlots(2, "it-host")
		must.NoError(t, err)
		p, err := NewPool(e.client(), slots, []PoolConfig{{Name: "mac", Size: 1, VMSpec: VMSpec{Image: ftImage}}},
			PoolOptions{OnEvent: ev.add, ReadyInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second, BootTimeout: 30 * time.Second})
		must.NoError(t, err)
		return p
	}
	running := func() []string {
		vms, err := e.client().List(ctx)
		must.NoError(t, err)
		var out []string
		for _, v := range vms {
			if v.IsLocal() && v.IsRunning() {
				out = append(out, v.Name)
			}
		}
		return out
	}

	first := newPool(&eventLog{})
	must.NoError(t, first.Start(ctx))
	t.Cleanup(func() { _ = first.Shutdown(context.Background()) })
	waitFor(t, func() bool { return len(running()) == 1 })
	must.Eq(t, 0, first.Stats()[0].Ready, must.Sprint("still booting"))
	vm := running()[0]

	ev := &eventLog{}
	second := newPool(ev)
	must.NoError(t, second.Start(ctx))
	t.Cleanup(func() { _ = second.Shutdown(context.Background()) })
	must.Eq(t, []string{vm}, running(), must.Sprint("the boot in progress survives the second pool's start"))
	must.Eq(t, 1, second.Stats()[0].Booting)
	must.SliceEmpty(t, ev.of(EventDeleted))

	waitFor(t, func() bool { return first.Stats()[0].Ready == 1 && second.Stats()[0].Ready == 1 })
	must.Len(t, 1, ev.of(EventAdopted))
	must.Eq(t, []string{vm}, running(), must.Sprint("adopted, no second boot"))

	// The first process goes away, handing its warm VM over.
	must.NoError(t, first.Detach(context.Background()))
	got, err := second.claim(ctx, "t", VMSpec{Pool: "mac"})
	must.NoError(t, err)
	must.Eq(t, vm, got.Name)
	must.NoError(t, second.Release(ctx, got))
	must.NoError(t, second.Shutdown(context.Background()))
}

// TestIntegration_Pool_replacesWarmVMAfterConfigChange restarts a pool
// with another cpu count on the same TART_HOME: the warm VM of the old
// shape is deleted and replaced, and a restart without a change adopts.
func TestIntegration_Pool_replacesWarmVMAfterConfigChange(t *testing.T) {
	// Not parallel: checkGoroutines counts the whole process.
	checkGoroutines(t)
	e := newFT(t)
	c := e.client()
	ctx := t.Context()
	start := func(cpu int) (*Pool, *eventLog) {
		slots, err := NewSlots(2, "it-host")
		must.NoError(t, err)
		ev := &eventLog{}
		p, err := NewPool(c, slots, []PoolConfig{{Name: "mac", Size: 1, VMSpec: VMSpec{Image: ftImage, CPU: cpu}}},
			PoolOptions{OnEvent: ev.add, ReadyInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second, BootTimeout: 30 * time.Second})
		must.NoError(t, err)
		must.NoError(t, p.Start(ctx))
		t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
		waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
		return p, ev
	}
	localVMs := func() []string {
		vms, err := c.List(ctx)
		must.NoError(t, err)
		var out []string
		for _, v := range vms {
			if v.IsLocal() {
				out = append(out, v.Name)
			}
		}
		return out
	}
	cpuOf := func(vm string) int {
		d, err := c.Get(ctx, vm)
		must.NoError(t, err)
		return d.CPU
	}

	first, _ := start(2)
	old := localVMs()
	must.Len(t, 1, old)
	must.Eq(t, 2, cpuOf(old[0]))
	must.NoError(t, first.Detach(context.Background()))

	// The operator raised cpu to 4 and restarted.
	second, ev := start(4)
	must.SliceEmpty(t, ev.of(EventAdopted))
	deleted := ev.of(EventDeleted)
	must.Len(t, 1, deleted)
	must.Eq(t, "Deleted warm VM "+old[0]+": built for cpu 2 but pool now wants cpu 4", deleted[0].Message)
	now := localVMs()
	must.Len(t, 1, now)
	must.NotEq(t, old[0], now[0])
	must.Len(t, 1, ev.of(EventBooting))
	vm, err := second.claim(ctx, "t", VMSpec{Pool: "mac", CPU: 4})
	must.NoError(t, err)
	must.Eq(t, now[0], vm.Name)
	must.Eq(t, 4, cpuOf(vm.Name), must.Sprint("the claim gets the new shape"))
	must.NoError(t, second.Release(ctx, vm))
	waitFor(t, func() bool { return second.Stats()[0].Ready == 1 })
	kept := localVMs()
	must.NoError(t, second.Detach(context.Background()))

	// Restarted without a change: adopted, nothing booted.
	third, ev := start(4)
	must.Len(t, 1, ev.of(EventAdopted))
	must.SliceEmpty(t, ev.of(EventBooting))
	must.SliceEmpty(t, ev.of(EventDeleted))
	must.Eq(t, kept, localVMs())
	vm, err = third.claim(ctx, "t", VMSpec{Pool: "mac", CPU: 4})
	must.NoError(t, err)
	must.Eq(t, kept[0], vm.Name)
	must.NoError(t, third.Release(ctx, vm))
	must.NoError(t, third.Shutdown(context.Background()))
}
