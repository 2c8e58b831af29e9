// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// NetworkMode selects how a VM is networked.
type NetworkMode string

// Network modes accepted by RunOptions.
const (
	// NetworkNAT is Apple's shared NAT (the default; no flag).
	NetworkNAT NetworkMode = "nat"
	// NetworkSoftnet is NAT filtered by the softnet helper (--net-softnet).
	NetworkSoftnet NetworkMode = "softnet"
	// NetworkBridged bridges to host interfaces (--net-bridged).
	NetworkBridged NetworkMode = "bridged"
	// NetworkHost is a host-only network (--net-host).
	NetworkHost NetworkMode = "host"
)

// Network is a VM's network configuration.
type Network struct {
	// Mode defaults to NetworkNAT.
	Mode NetworkMode
	// BridgedInterfaces are host interfaces for NetworkBridged ("en0").
	BridgedInterfaces []string
	// SoftnetAllow and SoftnetBlock are CIDRs for NetworkSoftnet.
	SoftnetAllow, SoftnetBlock []string
	// SoftnetExpose are "external:internal" TCP port forwards for
	// NetworkSoftnet.
	SoftnetExpose []string
}

// Args returns the tart run flags, or an error naming the bad field.
func (n Network) Args() ([]string, error) {
	softnetOnly := len(n.SoftnetAllow)+len(n.SoftnetBlock)+len(n.SoftnetExpose) > 0
	switch n.Mode {
	case "", NetworkNAT:
		if softnetOnly || len(n.BridgedInterfaces) > 0 {
			return nil, errors.New("network: softnet or bridged options need mode softnet or bridged")
		}
		return nil, nil
	case NetworkSoftnet:
		if len(n.BridgedInterfaces) > 0 {
			return nil, errors.New("network: bridged_interfaces need mode bridged")
		}
		args := []string{"--net-softnet"}
		if len(n.SoftnetAllow) > 0 {
			args = append(args, "--net-softnet-allow", strings.Join(n.SoftnetAllow, ","))
		}
		if len(n.SoftnetBlock) > 0 {
			args = append(args, "--net-softnet-block", strings.Join(n.SoftnetBlock, ","))
		}
		if len(n.SoftnetExpose) > 0 {
			args = append(args, "--net-softnet-expose", strings.Join(n.SoftnetExpose, ","))
		}
		return args, nil
	case NetworkBridged:
		if len(n.BridgedInterfaces) == 0 {
			return nil, errors.New("network: mode bridged needs at least one bridged interface")
		}
		if softnetOnly {
			return nil, errors.New("network: softnet options need mode softnet")
		}
		var args []string
		for _, i := range n.BridgedInterfaces {
			args = append(args, "--net-bridged", i)
		}
		return args, nil
	case NetworkHost:
		if softnetOnly || len(n.BridgedInterfaces) > 0 {
			return nil, errors.New("network: mode host takes no softnet or bridged options")
		}
		return []string{"--net-host"}, nil
	default:
		return nil, fmt.Errorf("network: mode %q is not one of nat, softnet, bridged, host", n.Mode)
	}
}

// DirShare is a host directory shared with the guest (tart run --dir).
type DirShare struct {
	// Name is optional (required when several shares use the same tag).
	Name string
	// Path is the host path (or an http(s) URL of a .tar.gz).
	Path     string
	ReadOnly bool
	// Tag is the virtiofs tag (default: the macOS automount tag).
	Tag string
}

// String renders the --dir value "[name:]path[:ro,tag=x]".
func (d DirShare) String() string {
	s := d.Path
	if d.Name != "" {
		s = d.Name + ":" + s
	}
	var o []string
	if d.ReadOnly {
		o = append(o, "ro")
	}
	if d.Tag != "" {
		o = append(o, "tag="+d.Tag)
	}
	if len(o) > 0 {
		s += ":" + strings.Join(o, ",")
	}
	return s
}

// RunOptions configure `tart run`. --no-graphics is always passed.
type RunOptions struct {
	Dirs    []DirShare
	Network Network
	// Suspendable passes --suspendable (macOS guests).
	Suspendable bool
	// RootDiskOpts is passed as --root-disk-opts when set.
	RootDiskOpts string
	// ExtraArgs are appended verbatim (after validation by tart).
	ExtraArgs []string
	// Detached starts tart run in its own session so the VM survives the
	// caller's death (even SIGKILL); stop it later with Client.Stop.
	Detached bool
	// LogPath receives tart run's stdout and stderr (appended). Default:
	// "ntart-run.log" inside the VM's directory, removed with the VM.
	LogPath string
}

// Args returns the tart run argument list for VM name.
func (o RunOptions) Args(name string) ([]string, error) {
	args := []string{"run", name, "--no-graphics"}
	for i, d := range o.Dirs {
		if d.Path == "" {
			return nil, fmt.Errorf("dirs[%d]: path is empty", i)
		}
		args = append(args, "--dir", d.String())
	}
	net, err := o.Network.Args()
	if err != nil {
		return nil, err
	}
	args = append(args, net...)
	if o.Suspendable {
		args = append(args, "--suspendable")
	}
	if o.RootDiskOpts != "" {
		args = append(args, "--root-disk-opts", o.RootDiskOpts)
	}
	return append(args, o.ExtraArgs...), nil
}

// runLogName is the file inside a VM directory that receives tart run's
// output by default.
const runLogName = "ntart-run.log"

// RunHandle is a started `tart run` (the VM's lifetime is this process).
type RunHandle struct {
	// VM is the VM name.
	VM string
	// proc is the tart run process.
	proc process
	// LogPath holds tart run's output.
	LogPath string
}

// Done is closed when tart run has exited (the VM is off).
func (h *RunHandle) Done() <-chan struct{} { return h.proc.Done() }

// Wait waits for tart run to exit. It returns nil on exit 0 (stopped by
// tart stop or guest shutdown) and an *Error with tart's message otherwise
// (ErrVMLimit, ErrAlreadyRunning, ErrVMNotFound, ...).
func (h *RunHandle) Wait() error {
	code, err := h.proc.Wait()
	if err == nil && code == 0 {
		return nil
	}
	return newError("run", h.VM, code, readRunErrors(h.LogPath), err)
}

// exitError is Wait's error, or one saying the VM stopped, for a tart run
// that exited while the VM was expected to run.
func (h *RunHandle) exitError() error {
	if err := h.Wait(); err != nil {
		return err
	}
	return &Error{Op: "run", VM: h.VM, ExitCode: 0, Message: "vm stopped before its guest agent answered"}
}

// Stop sends SIGINT (tart run powers the VM off and exits) and waits up to
// timeout before SIGKILL. It returns when the process is gone or ctx ends.
func (h *RunHandle) Stop(ctx context.Context, timeout time.Duration) error {
	if err := h.proc.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop vm %s: signal tart run: %w", h.VM, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-h.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop vm %s: %w", h.VM, ctx.Err())
	case <-t.C:
	}
	_ = h.proc.Signal(syscall.SIGKILL)
	select {
	case <-h.Done():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop vm %s: %w", h.VM, ctx.Err())
	}
}

// readRunErrors returns the lines of a tart run log that carry an error,
// skipping the status lines tart run prints on stdout.
func readRunErrors(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var keep []string
	for line := range strings.SplitSeq(string(b), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case l == "", l == "Stopping VM...",
			strings.HasPrefix(l, "There is already a running VM with the same MAC"),
			strings.HasPrefix(l, "Resetting VM to assign a new MAC"),
			strings.HasPrefix(l, "VNC server is running"),
			strings.HasPrefix(l, "restoring VM state"), l == "resuming VM...":
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// Run starts `tart run <name> --no-graphics ...` and returns without waiting
// for the boot; use WaitReady for the guest agent. The process is not bound
// to ctx (only used for the option checks): stop it with Stop or
// RunHandle.Stop.
func (c *Client) Run(ctx context.Context, name string, o RunOptions) (*RunHandle, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tart run %s: %w", name, err)
	}
	if err := validName(name); err != nil {
		return nil, err
	}
	args, err := o.Args(name)
	if err != nil {
		return nil, fmt.Errorf("tart run %s: %w", name, err)
	}
	if err := c.CheckHome(); err != nil {
		return nil, newError("run", name, -1, "", err)
	}
	logPath := o.LogPath
	if logPath == "" {
		logPath = filepath.Join(c.VMDir(name), runLogName)
	}
	cmd := c.command(args)
	c.logger.Debug("starting vm", "vm_name", name, "args", args, "detached", o.Detached)
	p, err := c.runner.Start(cmd, startOptions{Detached: o.Detached, StdoutPath: logPath, StderrPath: logPath})
	if err != nil {
		return nil, newError("run", name, -1, "", err)
	}
	return &RunHandle{VM: name, proc: p, LogPath: logPath}, nil
}

// ReadyOptions configure WaitReady.
type ReadyOptions struct {
	// Command is run in the guest to test the agent (default ["true"]).
	Command []string
	// Interval between attempts (default 1s).
	Interval time.Duration
	// Run, when set, is the VM's tart run: if it exits, waiting stops with
	// its error.
	Run *RunHandle
}

// WaitReady polls `tart exec <name> true` until the guest agent answers
// (exit 0), ctx ends, or the VM's tart run exits. "Not running" right after
// the spawn and "agent not ready" are retried; other tart failures (VM
// missing, VM limit) end the wait.
func (c *Client) WaitReady(ctx context.Context, name string, o ReadyOptions) error {
	argv := o.Command
	if len(argv) == 0 {
		argv = []string{"true"}
	}
	interval := o.Interval
	if interval <= 0 {
		interval = time.Second
	}
	var done <-chan struct{}
	if o.Run != nil {
		done = o.Run.Done()
	}
	var last error
	for {
		code, err := c.Exec(ctx, name, argv, ExecOptions{})
		switch {
		case err == nil && code == 0:
			return nil
		case err == nil:
			last = fmt.Errorf("readiness command exited %d", code)
		case errors.Is(err, ErrNotRunning), errors.Is(err, ErrAgentNotReady):
			last = err
		case ctx.Err() != nil:
		default:
			if o.Run != nil {
				select {
				case <-done:
					return fmt.Errorf("wait for vm %s: %w", name, o.Run.exitError())
				default:
				}
			}
			if !errors.Is(err, ErrVMNotFound) || o.Run == nil {
				return fmt.Errorf("wait for vm %s: %w", name, err)
			}
			last = err
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			if last != nil {
				return fmt.Errorf("wait for vm %s agent: %w (last error: %w)", name, ctx.Err(), last)
			}
			return fmt.Errorf("wait for vm %s agent: %w", name, ctx.Err())
		case <-done:
			t.Stop()
			return fmt.Errorf("wait for vm %s: %w", name, o.Run.exitError())
		case <-t.C:
		}
	}
}
