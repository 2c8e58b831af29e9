// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func TestBuiltFor_mismatch(t *testing.T) {
	t.Parallel()
	base := PoolConfig{Name: "mac", Size: 1, VMSpec: VMSpec{Image: testImage, CPU: 2, MemoryMiB: 8192}}
	for _, tc := range []struct {
		name   string
		change func(*PoolConfig)
		want   string // "" matches
	}{
		{name: "unchanged", change: func(*PoolConfig) {}},
		{name: "size and the spec's pool do not matter", change: func(c *PoolConfig) { c.Size, c.Pool = 2, "x" }},
		{name: "explicit nat is the default network", change: func(c *PoolConfig) { c.Run.Network.Mode = NetworkNAT }},
		{name: "cpu", change: func(c *PoolConfig) { c.CPU = 4 }, want: "built for cpu 2 but pool now wants cpu 4"},
		{name: "image", change: func(c *PoolConfig) { c.Image = "ghcr.io/test/linux:latest" },
			want: "built for image " + testImage + " but pool now wants image ghcr.io/test/linux:latest"},
		{name: "memory back to the image's", change: func(c *PoolConfig) { c.MemoryMiB = 0 },
			want: "built for memory 8192 MiB but pool now wants memory of the image"},
		{name: "disk size", change: func(c *PoolConfig) { c.DiskSizeGB = 100 },
			want: "built for disk size of the image but pool now wants disk size 100 GB"},
		{name: "network", change: func(c *PoolConfig) { c.Run.Network.Mode = NetworkSoftnet },
			want: "built for run options (none) but pool now wants run options --net-softnet"},
		{name: "shared dir", change: func(c *PoolConfig) { c.Run.Dirs = []DirShare{{Path: "/src", ReadOnly: true}} },
			want: "built for run options (none) but pool now wants run options --dir /src:ro"},
		{name: "several", change: func(c *PoolConfig) { c.CPU, c.MemoryMiB = 4, 4096 },
			want: "built for cpu 2, memory 8192 MiB but pool now wants cpu 4, memory 4096 MiB"},
		{name: "pool", change: func(c *PoolConfig) { c.Name = "linux" }, want: "built for pool mac but pool now wants pool linux"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := base
			tc.change(&now)
			err := builtForPool(base).mismatch(builtForPool(now))
			if tc.want == "" {
				must.NoError(t, err)
				return
			}
			must.EqError(t, err, tc.want)
		})
	}
}

func TestBuiltFor_writeRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := PoolConfig{Name: "mac", VMSpec: VMSpec{Image: testImage, CPU: 4, DiskSizeGB: 80,
		Run: RunOptions{Network: Network{Mode: NetworkSoftnet, SoftnetAllow: []string{"10.0.0.0/8"}}}}}
	must.NoError(t, writeBuiltFor(dir, builtForPool(cfg)))
	got, err := readBuiltFor(dir)
	must.NoError(t, err)
	must.NoError(t, got.mismatch(builtForPool(cfg)))

	// The record is plain JSON a human can read, and nothing else is left
	// in the directory.
	var raw map[string]any
	b, err := os.ReadFile(filepath.Join(dir, specMarker))
	must.NoError(t, err)
	must.NoError(t, json.Unmarshal(b, &raw))
	must.Eq(t, map[string]any{"version": 1.0, "pool": "mac", "image": testImage, "cpu": 4.0, "memory_mib": 0.0,
		"disk_size_gb": 80.0, "run_args": []any{"--net-softnet", "--net-softnet-allow", "10.0.0.0/8"}}, raw)
	entries, err := os.ReadDir(dir)
	must.NoError(t, err)
	must.Len(t, 1, entries)

	for _, tc := range []struct {
		name, content, want string
	}{
		{name: "missing", want: "it has no ntart-spec.json record of what it was built for"},
		{name: "not json", content: "cpu=4", want: "its ntart-spec.json record is not valid JSON"},
		{name: "other version", content: `{"version":2,"pool":"mac"}`, want: "its ntart-spec.json record has version 2, not 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.content != "" {
				must.NoError(t, os.WriteFile(filepath.Join(dir, specMarker), []byte(tc.content), 0o600))
			}
			_, err := readBuiltFor(dir)
			var stale *staleWarmVMError
			must.ErrorAs[*staleWarmVMError](t, err, &stale)
			must.ErrorContains(t, err, tc.want)
		})
	}
}

// TestPool_Start_replacesWarmVMsBuiltForAnotherConfig is a restart after
// the operator changed the pool's config: the first pool leaves its ready
// warm VM to the next (Detach), which must not hand it out as the new
// shape.
func TestPool_Start_replacesWarmVMsBuiltForAnotherConfig(t *testing.T) {
	checkGoroutines(t)
	old := PoolConfig{Name: "mac", Size: 1, VMSpec: VMSpec{Image: testImage, CPU: 2, MemoryMiB: 8192}}
	for _, tc := range []struct {
		name   string
		change func(*PoolConfig)
		want   string // the deleted event's reason; "" adopts the VM
	}{
		{name: "unchanged", change: func(*PoolConfig) {}},
		{name: "only size", change: func(c *PoolConfig) { c.Size = 2 }},
		{name: "cpu", change: func(c *PoolConfig) { c.CPU = 4 }, want: "built for cpu 2 but pool now wants cpu 4"},
		{name: "image", change: func(c *PoolConfig) { c.Image = "ghcr.io/test/linux:latest" },
			want: "built for image " + testImage + " but pool now wants image ghcr.io/test/linux:latest"},
		{name: "memory", change: func(c *PoolConfig) { c.MemoryMiB = 4096 }, want: "memory 8192 MiB but pool now wants memory 4096 MiB"},
		{name: "disk size", change: func(c *PoolConfig) { c.DiskSizeGB = 100 }, want: "disk size 100 GB"},
		{name: "network", change: func(c *PoolConfig) { c.Run.Network.Mode = NetworkSoftnet }, want: "run options --net-softnet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMemTart(t)
			first, _ := testPool(t, m, 2, []PoolConfig{old})
			must.NoError(t, first.Start(t.Context()))
			waitFor(t, func() bool { return first.Stats()[0].Ready == 1 })
			warm := m.running()[0]
			must.Eq(t, 2, m.cpuOf(warm))
			must.NoError(t, first.Detach(context.Background()))

			now := old
			tc.change(&now)
			next, ev := testPool(t, m, 2, []PoolConfig{now})
			startPool(t, next)
			if tc.want == "" {
				must.Len(t, 1, ev.of(EventAdopted))
				must.SliceEmpty(t, ev.of(EventDeleted))
				// Adopted without a new clone; a pool that grew may already
				// be booting its second VM, which is one clone more.
				must.Eq(t, 1+min(m.count("clone")-1, now.Size-old.Size), m.count("clone"), must.Sprint("adopted without a new clone"))
				vm, err := next.claim(t.Context(), "t", now.VMSpec)
				must.NoError(t, err)
				must.Eq(t, warm, vm.Name)
				must.NoError(t, next.Release(t.Context(), vm))
				return
			}
			// Deleted during Start, before anything could claim it.
			must.SliceNotContains(t, m.names(), warm)
			must.SliceEmpty(t, ev.of(EventAdopted))
			deleted := ev.of(EventDeleted)
			must.Len(t, 1, deleted)
			must.Eq(t, "mac", deleted[0].Pool)
			must.Eq(t, warm, deleted[0].VM)
			must.StrHasPrefix(t, "Deleted warm VM "+warm+": built for ", deleted[0].Message)
			must.StrContains(t, deleted[0].Message, tc.want)

			waitFor(t, func() bool { return next.Stats()[0].Ready == 1 })
			must.Eq(t, 2, m.count("clone"))
			vm, err := next.claim(t.Context(), "t", now.VMSpec)
			must.NoError(t, err)
			must.NotEq(t, warm, vm.Name)
			must.Eq(t, now.CPU, m.cpuOf(vm.Name), must.Sprint("the new shape"))
			built, err := readBuiltFor(filepath.Join(m.home, "vms", vm.Name))
			must.NoError(t, err)
			must.NoError(t, built.mismatch(builtForPool(now)))
			must.NoError(t, next.Release(t.Context(), vm))
		})
	}
}

func TestPool_Start_deletesWarmVMsWithoutAValidRecord(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	slots, _ := NewSlots(3, "test-host")
	m.images[testImage] = true
	// Left by a version that kept no record, or with a damaged one.
	noRecord, badRecord := "ntart-pool-mac-0-aaaaaa", "ntart-pool-mac-1-bbbbbb"
	m.addVM(noRecord, slots.mac(0), true)
	m.addVM(badRecord, slots.mac(1), true)
	must.NoError(t, os.WriteFile(filepath.Join(m.home, "vms", badRecord, specMarker), []byte("{"), 0o600))
	// Still booting in another, older process, which writes no record:
	// young and not answering, so it must be left alone until it answers.
	young := "ntart-pool-mac-2-cccccc"
	m.addVM(young, slots.mac(2), true)
	m.setAgent(young, false)

	ev := &eventLog{}
	p, err := NewPool(m.client(), slots, []PoolConfig{poolCfg("mac", 2)}, PoolOptions{OnEvent: ev.add,
		ReadyInterval: time.Millisecond, StopTimeout: time.Second, AdoptGracePeriod: time.Minute,
		BackoffMin: 20 * time.Millisecond})
	must.NoError(t, err)
	startPool(t, p)

	names := m.names()
	must.SliceNotContains(t, names, noRecord)
	must.SliceNotContains(t, names, badRecord)
	must.SliceContains(t, names, young)
	must.Eq(t, young, slots.ownerMap()[2], must.Sprint("the young vm keeps its slot"))
	deleted := func(vm string) string {
		for _, e := range ev.of(EventDeleted) {
			if e.VM == vm {
				return e.Message
			}
		}
		return ""
	}
	must.Eq(t, "Deleted warm VM "+noRecord+": it has no ntart-spec.json record of what it was built for", deleted(noRecord))
	must.StrHasPrefix(t, "Deleted warm VM "+badRecord+": its ntart-spec.json record is not valid JSON", deleted(badRecord))
	must.SliceEmpty(t, ev.of(EventAdopted))

	// It counts as booting: the pool boots only one VM of its two.
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })
	must.Eq(t, 1, m.count("clone"))
	must.Eq(t, 1, p.Stats()[0].Booting)

	// Once it answers, its missing record makes it stale: deleted and
	// replaced, never adopted.
	m.setAgent(young, true)
	waitFor(t, func() bool { return p.Stats()[0].Ready == 2 })
	must.SliceNotContains(t, m.names(), young)
	must.Eq(t, "Deleted warm VM "+young+": it has no ntart-spec.json record of what it was built for", deleted(young))
	must.SliceEmpty(t, ev.of(EventAdopted))
	must.Eq(t, 2, m.count("clone"))
}

// TestPool_Start_keepsStaleWarmVMClaimedMeanwhile: another, still-alive
// pool may hand a warm VM to a task between this pool's look at it and
// the delete; the task's VM must survive.
func TestPool_Start_keepsStaleWarmVMClaimedMeanwhile(t *testing.T) {
	checkGoroutines(t)
	m := newMemTart(t)
	slots, _ := NewSlots(2, "test-host")
	m.images[testImage] = true
	warm := "ntart-pool-mac-0-aaaaaa"
	m.addVM(warm, slots.mac(0), true)
	oldCfg := poolCfg("mac", 1)
	oldCfg.CPU = 2
	m.markBuiltFor(warm, oldCfg)
	m.onExec = func(vm string) {
		if vm == warm { // the adoption probe: its owner claims it now
			_ = os.WriteFile(filepath.Join(m.home, "vms", warm, ClaimedMarker), []byte("task\n"), 0o600)
		}
	}

	ev := &eventLog{}
	p, err := NewPool(m.client(), slots, []PoolConfig{poolCfg("mac", 1)}, PoolOptions{OnEvent: ev.add,
		ReadyInterval: time.Millisecond, StopTimeout: time.Second})
	must.NoError(t, err)
	startPool(t, p)
	must.SliceContains(t, m.names(), warm)
	must.SliceEmpty(t, ev.of(EventDeleted))
	must.Eq(t, warm, slots.ownerMap()[0], must.Sprint("a task's vm keeps its slot"))
	waitFor(t, func() bool { return p.Stats()[0].Ready == 1 })

	vm, ok := p.Lookup(warm)
	must.True(t, ok)
	must.NoError(t, p.Release(t.Context(), vm))
}
