// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Version returns `tart --version` (e.g. "2.32.1", or "SNAPSHOT").
func (c *Client) Version(ctx context.Context) (string, error) {
	out, err := c.exec(ctx, "--version", "", "--version")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// Clone runs `tart clone <source> <name>`. Tart silently replaces an
// existing <name>, so callers must use unique names (see TaskVMName and
// poolVMName). An uncached remote source is pulled first without progress;
// call EnsureImage beforehand to get progress events.
func (c *Client) Clone(ctx context.Context, source, name string) error {
	if err := validName(name); err != nil {
		return err
	}
	_, err := c.exec(ctx, "clone", name, "clone", source, name)
	return err
}

// SetOptions are the `tart set` options; zero values leave a setting alone.
type SetOptions struct {
	CPU        int // vCPUs
	MemoryMiB  int
	DiskSizeGB int // grows the disk (decimal GB); tart cannot shrink
	RandomMAC  bool
}

func (o SetOptions) empty() bool {
	return o.CPU == 0 && o.MemoryMiB == 0 && o.DiskSizeGB == 0 && !o.RandomMAC
}

// Set runs `tart set <name>` with the non-zero options. It does nothing when
// all options are zero (every `tart set` clears the display-refit setting).
func (c *Client) Set(ctx context.Context, name string, o SetOptions) error {
	if o.CPU < 0 || o.MemoryMiB < 0 || o.DiskSizeGB < 0 {
		return fmt.Errorf("tart set %s: negative cpu %d, memory %d or disk size %d", name, o.CPU, o.MemoryMiB, o.DiskSizeGB)
	}
	if o.empty() {
		return nil
	}
	args := []string{"set", name}
	if o.CPU > 0 {
		args = append(args, "--cpu", strconv.Itoa(o.CPU))
	}
	if o.MemoryMiB > 0 {
		args = append(args, "--memory", strconv.Itoa(o.MemoryMiB))
	}
	if o.DiskSizeGB > 0 {
		args = append(args, "--disk-size", strconv.Itoa(o.DiskSizeGB))
	}
	if o.RandomMAC {
		args = append(args, "--random-mac")
	}
	_, err := c.exec(ctx, "set", name, args...)
	return err
}

// IPOptions are the `tart ip` options.
type IPOptions struct {
	// Wait is how long tart keeps trying (whole seconds; 0 = one try).
	Wait time.Duration
	// Resolver is "dhcp" (default), "arp" or "agent".
	Resolver string
}

// IP runs `tart ip <name>` and returns the address. ErrNoIP when none.
func (c *Client) IP(ctx context.Context, name string, o IPOptions) (string, error) {
	args := []string{"ip", name}
	if o.Wait > 0 {
		args = append(args, "--wait", strconv.Itoa(int((o.Wait+time.Second-1)/time.Second)))
	}
	switch o.Resolver {
	case "":
	case "dhcp", "arp", "agent":
		args = append(args, "--resolver", o.Resolver)
	default:
		return "", fmt.Errorf("tart ip %s: resolver %q is not one of dhcp, arp, agent", name, o.Resolver)
	}
	out, err := c.exec(ctx, "ip", name, args...)
	if err != nil {
		return "", err
	}
	ip := strings.TrimSpace(out)
	if ip == "" {
		return "", newError("ip", name, 0, "no IP address found", nil)
	}
	return ip, nil
}

// Stop runs `tart stop <name> --timeout <s>`: SIGINT to the VM's tart run,
// SIGKILL after timeout (a negative timeout uses tart's default of 30s).
// ErrNotRunning when the VM is stopped, ErrVMNotFound when missing.
func (c *Client) Stop(ctx context.Context, name string, timeout time.Duration) error {
	args := []string{"stop", name}
	if timeout >= 0 {
		args = append(args, "--timeout", strconv.Itoa(int((timeout+time.Second-1)/time.Second)))
	}
	_, err := c.exec(ctx, "stop", name, args...)
	return err
}

// Delete runs `tart delete <names...>`. Tart stops at the first failure.
// ErrVMRunning for a running VM, ErrVMNotFound for a missing one.
func (c *Client) Delete(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	_, err := c.exec(ctx, "delete", strings.Join(names, ","), append([]string{"delete"}, names...)...)
	return err
}

// Destroy stops (if running) and deletes a VM, treating "already stopped"
// and "already gone" as success. A delete that still sees the VM running is
// retried until ctx ends, with another stop before each retry: tart stop
// returns right after SIGKILL, and a `tart run` that was still starting
// when the first stop found nothing to stop may have taken the VM since.
func (c *Client) Destroy(ctx context.Context, name string, stopTimeout time.Duration) error {
	stop := func() error {
		if err := ignore(c.Stop(ctx, name, stopTimeout), ErrNotRunning, ErrVMNotFound); err != nil {
			return fmt.Errorf("destroy vm %s: %w", name, err)
		}
		return nil
	}
	if err := stop(); err != nil {
		return err
	}
	delay := 50 * time.Millisecond
	for {
		err := ignore(c.Delete(ctx, name), ErrVMNotFound)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrVMRunning) {
			return fmt.Errorf("destroy vm %s: %w", name, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("destroy vm %s: %w (last error: %w)", name, ctx.Err(), err)
		case <-t.C:
		}
		delay = min(delay*2, time.Second)
		if err := stop(); err != nil {
			return err
		}
	}
}

// VMInfo is one entry of `tart list --format json`.
type VMInfo struct {
	Source   string `json:"Source"` // "local" or "OCI"
	Name     string `json:"Name"`
	Disk     int    `json:"Disk"`     // apparent GB
	Size     int    `json:"Size"`     // allocated GB
	Accessed string `json:"Accessed"` // ISO-8601 (tart 2.31+)
	Running  bool   `json:"Running"`
	State    string `json:"State"` // running, suspended, stopped
}

// VM states reported by list and get.
const (
	// StateRunning is a VM whose tart run is alive.
	StateRunning = "running"
	// StateSuspended is a VM suspended by tart suspend (a template).
	StateSuspended = "suspended"
	// StateStopped is a VM that is not running.
	StateStopped = "stopped"
)

// IsLocal reports whether the entry is a local VM (not an OCI cache entry).
func (v VMInfo) IsLocal() bool { return strings.EqualFold(v.Source, "local") }

// IsRunning reports whether the VM is running.
func (v VMInfo) IsRunning() bool { return v.State == StateRunning || (v.State == "" && v.Running) }

// List runs `tart list --format json`: local VMs, then OCI cache entries.
func (c *Client) List(ctx context.Context) ([]VMInfo, error) {
	out, err := c.exec(ctx, "list", "", "list", "--format", "json")
	if err != nil {
		return nil, err
	}
	var vms []VMInfo
	if strings.TrimSpace(out) == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(out), &vms); err != nil {
		return nil, fmt.Errorf("tart list: decode json output: %w", err)
	}
	return vms, nil
}

// VMDetails is the output of `tart get --format json`.
type VMDetails struct {
	OS         string      `json:"OS"`
	CPU        int         `json:"CPU"`
	Memory     int         `json:"Memory"` // MiB
	Disk       int         `json:"Disk"`   // GB
	DiskFormat string      `json:"DiskFormat"`
	Size       json.Number `json:"Size"` // allocated GB, a string like "21.345"
	Display    string      `json:"Display"`
	Running    bool        `json:"Running"`
	State      string      `json:"State"`
}

// UnmarshalJSON accepts Size as a string (tart get) or a number.
func (d *VMDetails) UnmarshalJSON(b []byte) error {
	type plain VMDetails
	var aux struct {
		plain
		Size any `json:"Size"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*d = VMDetails(aux.plain)
	switch v := aux.Size.(type) {
	case string:
		d.Size = json.Number(v)
	case float64:
		d.Size = json.Number(strconv.FormatFloat(v, 'f', -1, 64))
	}
	return nil
}

// Get runs `tart get <name> --format json`.
func (c *Client) Get(ctx context.Context, name string) (*VMDetails, error) {
	out, err := c.exec(ctx, "get", name, "get", name, "--format", "json")
	if err != nil {
		return nil, err
	}
	var d VMDetails
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		return nil, fmt.Errorf("tart get %s: decode json output: %w", name, err)
	}
	return &d, nil
}

// ExecOptions are the streams of a guest command.
type ExecOptions struct {
	// Stdin, when non-nil, is forwarded to the guest command (tart exec -i);
	// EOF is forwarded too. Secrets belong here, never in argv.
	Stdin io.Reader
	// Stdout and Stderr receive the guest command's output (nil discards).
	Stdout, Stderr io.Writer
	// TTY allocates a guest PTY (tart exec -t); tart then needs a terminal
	// as its stdout, and the guest's stderr is merged into stdout.
	TTY bool
}

// Exec runs argv inside the running VM through the guest agent (`tart exec`)
// and returns the guest command's exit code. A nil error means the guest
// command ran: its exit code, whatever it is, is returned. Tart's own
// failures (VM missing or not running, agent unreachable, program could not
// be started) return an *Error (ErrVMNotFound, ErrNotRunning,
// ErrAgentNotReady, ErrFailed). Tart shares exit codes 1 and 2 with the guest,
// so they are told apart by tart's message on the last stderr line; a guest
// command that itself ends with such a line and exit 1/2 is reported as a
// tart failure.
func (c *Client) Exec(ctx context.Context, name string, argv []string, o ExecOptions) (int, error) {
	if len(argv) == 0 {
		return -1, fmt.Errorf("tart exec %s: empty command", name)
	}
	if err := c.CheckHome(); err != nil {
		return -1, newError("exec", name, -1, "", err)
	}
	args := execArgs(name, argv, o.Stdin != nil, o.TTY)
	tail := &tailBuffer{max: 4096}
	cmd := c.command(args)
	cmd.Stdin, cmd.Stdout = o.Stdin, o.Stdout
	if o.Stderr != nil {
		cmd.Stderr = io.MultiWriter(o.Stderr, tail)
	} else {
		cmd.Stderr = tail
	}
	// argv is not logged: guest commands may carry data the caller
	// considers private; the program name is enough to debug.
	c.logger.Log(ctx, levelTrace, "running tart", "op", "exec", "vm_name", name, "program", argv[0])
	code, err := c.runner.Run(ctx, cmd)
	if err != nil {
		return -1, newError("exec", name, -1, "", err)
	}
	if code == 0 {
		return 0, nil
	}
	if line := lastLine(tail.String()); isTartExecFailure(code, name, line) {
		return code, newError("exec", name, code, line, nil)
	}
	return code, nil
}

// execArgs is the argument list of `tart exec [-i] [-t] <name> argv...`,
// used by Exec.
func execArgs(name string, argv []string, interactive, tty bool) []string {
	args := []string{"exec"}
	if interactive {
		args = append(args, "-i")
	}
	if tty {
		args = append(args, "-t")
	}
	return append(append(args, name), argv...)
}

// isTartExecFailure tells tart's own exec failures from the guest's exit
// codes by the message tart prints.
func isTartExecFailure(code int, name, line string) bool {
	switch code {
	case 2:
		return line == fmt.Sprintf("VM %q is not running", name) ||
			strings.Contains(line, fmt.Sprintf("the specified VM %q does not exist", name))
	case 1:
		return strings.Contains(line, "Failed to connect to the VM using its control socket") ||
			strings.HasPrefix(line, `"tart exec" is only available`) ||
			strings.HasPrefix(line, "Error: ")
	}
	return false
}

// validName rejects names tart would treat as remote or that cannot be a
// directory name.
func validName(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("invalid local vm name %q: must be non-empty and contain no '/'", name)
	}
	return nil
}
