// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func okRunner(stdout string) *fakeRunner {
	return &fakeRunner{handler: func([]string) fakeResult { return fakeResult{stdout: stdout} }}
}

func TestClient_argv(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name string
		call func(c *Client) error
		want string
	}{
		{"clone", func(c *Client) error { return c.Clone(ctx, "ghcr.io/cirruslabs/macos:latest", "vm1") },
			"clone ghcr.io/cirruslabs/macos:latest vm1"},
		{"set all", func(c *Client) error {
			return c.Set(ctx, "vm1", SetOptions{CPU: 4, MemoryMiB: 8192, DiskSizeGB: 80, RandomMAC: true})
		}, "set vm1 --cpu 4 --memory 8192 --disk-size 80 --random-mac"},
		{"set cpu only", func(c *Client) error { return c.Set(ctx, "vm1", SetOptions{CPU: 2}) }, "set vm1 --cpu 2"},
		{"stop timeout rounds up", func(c *Client) error { return c.Stop(ctx, "vm1", 1500*time.Millisecond) },
			"stop vm1 --timeout 2"},
		{"stop zero timeout", func(c *Client) error { return c.Stop(ctx, "vm1", 0) }, "stop vm1 --timeout 0"},
		{"stop default timeout", func(c *Client) error { return c.Stop(ctx, "vm1", -1) }, "stop vm1"},
		{"delete many", func(c *Client) error { return c.Delete(ctx, "a", "b") }, "delete a b"},
		{"ip agent wait", func(c *Client) error {
			_, err := c.IP(ctx, "vm1", IPOptions{Wait: 30 * time.Second, Resolver: "agent"})
			return err
		}, "ip vm1 --wait 30 --resolver agent"},
		{"list", func(c *Client) error { _, err := c.List(ctx); return err }, "list --format json"},
		{"get", func(c *Client) error { _, err := c.Get(ctx, "vm1"); return err }, "get vm1 --format json"},
		{"pull", func(c *Client) error {
			return c.Pull(ctx, "localhost:5000/x:1", PullOptions{Insecure: true, Concurrency: 8})
		}, "pull localhost:5000/x:1 --insecure --concurrency 8"},
		{"exec no stdin", func(c *Client) error {
			_, err := c.Exec(ctx, "vm1", []string{"ls", "-la"}, ExecOptions{})
			return err
		}, "exec vm1 ls -la"},
		{"exec stdin tty", func(c *Client) error {
			_, err := c.Exec(ctx, "vm1", []string{"sh"}, ExecOptions{Stdin: strings.NewReader("x"), TTY: true})
			return err
		}, "exec -i -t vm1 sh"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := "1.2.3.4\n"
			switch tc.name {
			case "get":
				out = `{"OS":"darwin","Size":"1.5"}`
			case "list":
				out = "[]"
			}
			f := okRunner(out)
			c := NewClient(withRunner(f), WithBinary("/opt/tart"), WithHome("/th"), WithEnv("TART_NO_AUTO_PRUNE=1"))
			must.NoError(t, tc.call(c))
			must.Eq(t, tc.want, f.lastCall())
			env := f.envs[len(f.envs)-1]
			must.SliceContains(t, env, "TART_HOME=/th")
			must.SliceContains(t, env, "CI=1")
			must.SliceContains(t, env, "TART_NO_AUTO_PRUNE=1")
		})
	}
}

func TestClient_Set_nothingToDo(t *testing.T) {
	t.Parallel()
	f := okRunner("")
	must.NoError(t, NewClient(withRunner(f)).Set(context.Background(), "vm1", SetOptions{}))
	must.SliceEmpty(t, f.Calls())
	must.Error(t, NewClient(withRunner(f)).Set(context.Background(), "vm1", SetOptions{CPU: -1}))
}

func TestClient_Clone_rejectsRemoteTarget(t *testing.T) {
	t.Parallel()
	f := okRunner("")
	err := NewClient(withRunner(f)).Clone(context.Background(), "img", "a/b")
	must.ErrorContains(t, err, "invalid local vm name")
	must.SliceEmpty(t, f.Calls())
}

const listJSON = `[
  {
    "Accessed" : "2026-05-01T09:30:12Z",
    "Disk" : 50,
    "Name" : "pool-slot-1",
    "Running" : true,
    "Size" : 24,
    "Source" : "local",
    "State" : "running",
    "Future" : "ignored"
  },
  {
    "Disk" : 50,
    "Name" : "ghcr.io/cirruslabs/macos-tahoe-base:latest",
    "Running" : false,
    "Size" : 24,
    "SizeOnDisk" : 3,
    "Source" : "OCI",
    "State" : "stopped"
  }
]`

func TestClient_List(t *testing.T) {
	t.Parallel()
	vms, err := NewClient(withRunner(okRunner(listJSON))).List(context.Background())
	must.NoError(t, err)
	must.Len(t, 2, vms)
	must.Eq(t, VMInfo{Source: "local", Name: "pool-slot-1", Disk: 50, Size: 24, Accessed: "2026-05-01T09:30:12Z", Running: true, State: "running"}, vms[0])
	must.True(t, vms[0].IsLocal())
	must.True(t, vms[0].IsRunning())
	must.False(t, vms[1].IsLocal())
	must.False(t, vms[1].IsRunning())

	empty, err := NewClient(withRunner(okRunner("[]\n"))).List(context.Background())
	must.NoError(t, err)
	must.SliceEmpty(t, empty)

	_, err = NewClient(withRunner(okRunner("not json"))).List(context.Background())
	must.ErrorContains(t, err, "decode json")
}

func TestClient_Get(t *testing.T) {
	t.Parallel()
	out := `{
  "CPU" : 4, "Disk" : 50, "DiskFormat" : "raw", "Display" : "1024x768",
  "Memory" : 8192, "OS" : "darwin", "Running" : true, "Size" : "21.345", "State" : "running"
}`
	d, err := NewClient(withRunner(okRunner(out))).Get(context.Background(), "vm1")
	must.NoError(t, err)
	must.Eq(t, VMDetails{OS: "darwin", CPU: 4, Memory: 8192, Disk: 50, DiskFormat: "raw", Size: "21.345",
		Display: "1024x768", Running: true, State: "running"}, *d)

	d, err = NewClient(withRunner(okRunner(`{"Size": 3.5}`))).Get(context.Background(), "vm1")
	must.NoError(t, err)
	must.Eq(t, "3.5", string(d.Size))
}

func TestClient_IP(t *testing.T) {
	t.Parallel()
	ip, err := NewClient(withRunner(okRunner("192.168.64.5\n"))).IP(context.Background(), "vm1", IPOptions{})
	must.NoError(t, err)
	must.Eq(t, "192.168.64.5", ip)

	_, err = NewClient(withRunner(okRunner(""))).IP(context.Background(), "vm1", IPOptions{Resolver: "bogus"})
	must.ErrorContains(t, err, `resolver "bogus"`)
}

func TestClient_Exec_exitCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		code     int
		stderr   string
		wantCode int
		wantErr  error // nil: the guest's own exit code
	}{
		{"success", 0, "", 0, nil},
		{"guest exit 3", 3, "boom\n", 3, nil},
		{"guest exit 1 with own message", 1, "grep: no match\n", 1, nil},
		{"guest exit 2 like usage", 2, "usage: foo\n", 2, nil},
		{"guest killed by signal", 255, "", 255, nil},
		{"not running", 2, "VM \"vm1\" is not running\n", 2, ErrNotRunning},
		{"missing vm", 2, "the specified VM \"vm1\" does not exist\n", 2, ErrVMNotFound},
		{"agent unreachable", 1, "guest output\nFailed to connect to the VM using its control socket: timeout, is the Tart Guest Agent running?\n", 1, ErrAgentNotReady},
		{"program cannot start", 1, "Error: no such file or directory\n", 1, ErrFailed},
		{"other vm not running is the guest's", 2, "VM \"other\" is not running\n", 2, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeRunner{handler: func([]string) fakeResult {
				return fakeResult{code: tc.code, stdout: "out\n", stderr: tc.stderr}
			}}
			var stdout, stderr bytes.Buffer
			code, err := NewClient(withRunner(f)).Exec(context.Background(), "vm1", []string{"cmd"},
				ExecOptions{Stdin: strings.NewReader("secret-input"), Stdout: &stdout, Stderr: &stderr})
			must.Eq(t, tc.wantCode, code)
			if tc.wantErr == nil {
				must.NoError(t, err)
			} else {
				must.ErrorIs(t, err, tc.wantErr)
				must.StrNotContains(t, err.Error(), "secret-input")
			}
			must.Eq(t, "out\n", stdout.String())
			must.Eq(t, tc.stderr, stderr.String())
			must.Eq(t, []string{"secret-input"}, f.stdins)
			must.False(t, slices.ContainsFunc(f.Calls()[0], func(a string) bool { return strings.Contains(a, "secret") }))
		})
	}
}

func TestClient_Exec_runnerError(t *testing.T) {
	t.Parallel()
	f := &fakeRunner{handler: func([]string) fakeResult { return fakeResult{err: context.Canceled} }}
	code, err := NewClient(withRunner(f)).Exec(context.Background(), "vm1", []string{"true"}, ExecOptions{})
	must.Eq(t, -1, code)
	must.ErrorIs(t, err, context.Canceled)
	_, err = NewClient(withRunner(f)).Exec(context.Background(), "vm1", nil, ExecOptions{})
	must.ErrorContains(t, err, "empty command")
}

func TestClient_Destroy(t *testing.T) {
	t.Parallel()
	t.Run("not running and missing are fine", func(t *testing.T) {
		t.Parallel()
		f := &fakeRunner{handler: func(a []string) fakeResult {
			if a[0] == "stop" {
				return fakeResult{code: 2, stderr: "VM \"vm1\" is not running\n"}
			}
			return fakeResult{code: 2, stderr: "the specified VM \"vm1\" does not exist\n"}
		}}
		must.NoError(t, NewClient(withRunner(f)).Destroy(context.Background(), "vm1", time.Second))
		must.Eq(t, [][]string{{"stop", "vm1", "--timeout", "1"}, {"delete", "vm1"}}, f.Calls())
	})
	t.Run("delete retried while still running", func(t *testing.T) {
		t.Parallel()
		n := 0
		f := &fakeRunner{handler: func(a []string) fakeResult {
			if a[0] == "delete" {
				n++
				if n < 3 {
					return fakeResult{code: 1, stderr: "VM \"vm1\" is running\n"}
				}
			}
			return fakeResult{}
		}}
		must.NoError(t, NewClient(withRunner(f)).Destroy(context.Background(), "vm1", 0))
		must.Eq(t, 3, n)
		// a stop before every delete: the VM may have been taken by a
		// `tart run` that was still starting
		must.Eq(t, [][]string{
			{"stop", "vm1", "--timeout", "0"}, {"delete", "vm1"},
			{"stop", "vm1", "--timeout", "0"}, {"delete", "vm1"},
			{"stop", "vm1", "--timeout", "0"}, {"delete", "vm1"},
		}, f.Calls())
	})
	t.Run("other stop failure", func(t *testing.T) {
		t.Parallel()
		f := &fakeRunner{handler: func([]string) fakeResult {
			return fakeResult{code: 1, stderr: "failed to forcefully terminate the VM \"vm1\": EPERM\n"}
		}}
		err := NewClient(withRunner(f)).Destroy(context.Background(), "vm1", 0)
		must.ErrorIs(t, err, ErrFailed)
		must.ErrorContains(t, err, "forcefully terminate")
		must.Len(t, 1, f.Calls())
	})
	t.Run("context ends the retries", func(t *testing.T) {
		t.Parallel()
		f := &fakeRunner{handler: func(a []string) fakeResult {
			if a[0] == "delete" {
				return fakeResult{code: 1, stderr: "VM \"vm1\" is running\n"}
			}
			return fakeResult{}
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		err := NewClient(withRunner(f)).Destroy(ctx, "vm1", 0)
		must.True(t, errors.Is(err, context.DeadlineExceeded))
		must.ErrorIs(t, err, ErrVMRunning)
	})
}

func TestClient_Exec_logsNoSecrets(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: levelTrace}))
	f := &fakeRunner{handler: func([]string) fakeResult {
		return fakeResult{code: 1, stderr: "Failed to connect to the VM using its control socket: x\n"}
	}}
	c := NewClient(withRunner(f), WithLogger(logger))
	_, err := c.Exec(context.Background(), "vm1", []string{"/bin/sh", "-c", "token-in-argv"}, ExecOptions{Stdin: strings.NewReader("stdin-secret")})
	must.ErrorIs(t, err, ErrAgentNotReady)
	must.StrContains(t, logs.String(), "vm_name=vm1")
	for _, secret := range []string{"stdin-secret", "token-in-argv"} {
		must.StrNotContains(t, logs.String(), secret)
		must.StrNotContains(t, err.Error(), secret)
	}
}
