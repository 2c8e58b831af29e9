// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func TestRunOptions_Args(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		opts    RunOptions
		want    string
		wantErr string
	}{
		{"default nat", RunOptions{}, "run vm --no-graphics", ""},
		{"dirs", RunOptions{Dirs: []DirShare{{Path: "/src"}, {Name: "cache", Path: "~/c", ReadOnly: true, Tag: "t1"}}},
			"run vm --no-graphics --dir /src --dir cache:~/c:ro,tag=t1", ""},
		{"softnet", RunOptions{Network: Network{Mode: NetworkSoftnet, SoftnetAllow: []string{"10.0.0.0/8", "192.168.0.0/16"}, SoftnetBlock: []string{"1.1.1.1/32"}, SoftnetExpose: []string{"2222:22"}}},
			"run vm --no-graphics --net-softnet --net-softnet-allow 10.0.0.0/8,192.168.0.0/16 --net-softnet-block 1.1.1.1/32 --net-softnet-expose 2222:22", ""},
		{"bridged", RunOptions{Network: Network{Mode: NetworkBridged, BridgedInterfaces: []string{"en0", "Wi-Fi"}}},
			"run vm --no-graphics --net-bridged en0 --net-bridged Wi-Fi", ""},
		{"host", RunOptions{Network: Network{Mode: NetworkHost}}, "run vm --no-graphics --net-host", ""},
		{"extras", RunOptions{Suspendable: true, RootDiskOpts: "sync=none", ExtraArgs: []string{"--no-audio"}},
			"run vm --no-graphics --suspendable --root-disk-opts sync=none --no-audio", ""},
		{"bridged without iface", RunOptions{Network: Network{Mode: NetworkBridged}}, "", "at least one bridged interface"},
		{"softnet opts on nat", RunOptions{Network: Network{SoftnetAllow: []string{"x"}}}, "", "need mode softnet"},
		{"unknown mode", RunOptions{Network: Network{Mode: "wifi"}}, "", `mode "wifi"`},
		{"empty dir", RunOptions{Dirs: []DirShare{{Name: "x"}}}, "", "dirs[0]: path is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args, err := tc.opts.Args("vm")
			if tc.wantErr != "" {
				must.ErrorContains(t, err, tc.wantErr)
				return
			}
			must.NoError(t, err)
			must.Eq(t, tc.want, strings.Join(args, " "))
		})
	}
}

func TestClient_Run_detachedWithLogInVMDir(t *testing.T) {
	t.Parallel()
	f := okRunner("")
	home := t.TempDir()
	c := NewClient(withRunner(f), WithHome(home))
	h, err := c.Run(context.Background(), "vm1", RunOptions{Detached: true, Network: Network{Mode: NetworkSoftnet}})
	must.NoError(t, err)
	must.Eq(t, "run vm1 --no-graphics --net-softnet", f.lastCall())
	must.Eq(t, startOptions{Detached: true, StdoutPath: filepath.Join(home, "vms", "vm1", runLogName), StderrPath: filepath.Join(home, "vms", "vm1", runLogName)}, f.startOp[0])

	// tart run fails at start: Wait carries its message, skipping status lines.
	must.NoError(t, os.MkdirAll(filepath.Dir(h.LogPath), 0o755))
	must.NoError(t, os.WriteFile(h.LogPath, []byte("There is already a running VM with the same MAC address!\nThe number of VMs exceeds the system limit\n"), 0o600))
	f.started[0].exit(1)
	err = h.Wait()
	must.ErrorIs(t, err, ErrVMLimit)
	must.ErrorContains(t, err, "The number of VMs exceeds the system limit (exit 1)")

	_, err = c.Run(context.Background(), "a/b", RunOptions{})
	must.Error(t, err)
}

func TestRunHandle_Stop(t *testing.T) {
	t.Parallel()
	p := &fakeProcess{done: make(chan struct{})}
	h := &RunHandle{VM: "vm1", proc: p}
	must.NoError(t, h.Stop(context.Background(), time.Second))
	must.Eq(t, []os.Signal{syscall.SIGINT}, p.sigs)
	must.NoError(t, h.Wait())
}

func TestClient_WaitReady(t *testing.T) {
	t.Parallel()
	t.Run("retries until the agent answers", func(t *testing.T) {
		t.Parallel()
		n := 0
		f := &fakeRunner{handler: func([]string) fakeResult {
			n++
			switch n {
			case 1:
				return fakeResult{code: 2, stderr: "VM \"vm1\" is not running\n"}
			case 2:
				return fakeResult{code: 1, stderr: "Failed to connect to the VM using its control socket: x, is the Tart Guest Agent running?\n"}
			}
			return fakeResult{}
		}}
		err := NewClient(withRunner(f)).WaitReady(context.Background(), "vm1", ReadyOptions{Interval: time.Millisecond})
		must.NoError(t, err)
		must.Eq(t, 3, n)
		must.Eq(t, "exec vm1 true", f.lastCall())
	})
	t.Run("stops when tart run exits", func(t *testing.T) {
		t.Parallel()
		f := &fakeRunner{handler: func([]string) fakeResult {
			return fakeResult{code: 1, stderr: "Failed to connect to the VM using its control socket: x\n"}
		}}
		p := &fakeProcess{done: make(chan struct{})}
		p.exit(1)
		h := &RunHandle{VM: "vm1", proc: p, LogPath: filepath.Join(t.TempDir(), "none")}
		err := NewClient(withRunner(f)).WaitReady(context.Background(), "vm1", ReadyOptions{Interval: time.Millisecond, Run: h})
		must.ErrorIs(t, err, ErrFailed)
		must.ErrorContains(t, err, "tart run vm1")
	})
	t.Run("context deadline keeps the last error", func(t *testing.T) {
		t.Parallel()
		f := &fakeRunner{handler: func([]string) fakeResult {
			return fakeResult{code: 1, stderr: "Failed to connect to the VM using its control socket: x\n"}
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		err := NewClient(withRunner(f)).WaitReady(ctx, "vm1", ReadyOptions{Interval: time.Millisecond})
		must.ErrorIs(t, err, context.DeadlineExceeded)
		must.ErrorIs(t, err, ErrAgentNotReady)
	})
	t.Run("missing vm fails at once", func(t *testing.T) {
		t.Parallel()
		f := &fakeRunner{handler: func([]string) fakeResult {
			return fakeResult{code: 2, stderr: "the specified VM \"vm1\" does not exist\n"}
		}}
		err := NewClient(withRunner(f)).WaitReady(context.Background(), "vm1", ReadyOptions{Interval: time.Millisecond})
		must.ErrorIs(t, err, ErrVMNotFound)
		must.Len(t, 1, f.Calls())
	})
}
