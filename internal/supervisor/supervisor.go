// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/atomicfile"
)

// Command is the sub-command that makes a binary run as a supervisor:
// `<binary> supervise <state dir>`.
const Command = "supervise"

// ErrNotRunning is returned by Kill and Signal when no supervisor owns the
// directory any more (it ended, or never started).
var ErrNotRunning = errors.New("supervisor is not running")

// pollInterval is how often Wait checks an adopted supervisor.
const pollInterval = 100 * time.Millisecond

// DefaultStartTimeout bounds how long Start waits for the start report.
const DefaultStartTimeout = 30 * time.Second

// childEnv marks a process that spawn started as a supervisor. Only spawn
// sets it, so the init below never fires in a process started any other
// way.
const childEnv = "NTART_SUPERVISOR_CHILD"

// init makes every binary that can start a supervisor (it links this
// package) serve as one, even if its main or TestMain forgot
// MainIfInvoked: a test binary re-executed without the hook would
// otherwise run its whole test suite again in the child, recursively.
func init() {
	if os.Getenv(childEnv) != "1" {
		return
	}
	// Not inherited by the guest command or anything it starts.
	_ = os.Unsetenv(childEnv)
	MainIfInvoked()
}

// MainIfInvoked runs the supervisor and exits when the process was started
// as `<binary> supervise <dir>`; otherwise it returns at once. Call it first
// in main, and in TestMain of tests whose code starts supervisors with the
// test binary as Self (the package's init does it too for a process that
// Start spawned; the explicit call documents the sub-command).
func MainIfInvoked() {
	if len(os.Args) > 1 && os.Args[1] == Command {
		os.Exit(Main(os.Args[2:]))
	}
}

// StartOptions configure Start.
type StartOptions struct {
	// Self is the binary to re-execute as the supervisor (default
	// os.Executable()).
	Self string
	// Dir is the state directory; it is created if missing.
	Dir  string
	Spec Spec
	// Stdin is handed to the supervisor through a pipe (never on disk,
	// argv or an environment) and forwarded to the guest command first.
	Stdin []byte
	// Timeout bounds the wait for the start report (default
	// DefaultStartTimeout).
	Timeout time.Duration
}

// Handle is a supervisor this process started or adopted.
type Handle struct {
	Dir string
	// PID and ExecPID are informational (resource statistics); they are
	// never used to signal.
	PID, ExecPID int
	// reaped is closed once a child supervisor was waited for; nil for an
	// adopted supervisor (not our child).
	reaped chan struct{}
}

// Start writes the spec, starts `<Self> supervise <Dir>` in its own session,
// hands it Stdin and waits for its start report: tart exec is running when
// Start returns nil. When ctx ends first, the supervisor is told to stop
// (which kills tart exec if it started) and reaped.
func Start(ctx context.Context, o StartOptions) (*Handle, error) {
	if o.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own binary for the supervisor: %w", err)
		}
		o.Self = self
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultStartTimeout
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create supervisor state dir: %w", err)
	}
	b, err := json.Marshal(o.Spec)
	if err == nil {
		err = atomicfile.Write(filepath.Join(o.Dir, SpecFile), b, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("write supervisor spec: %w", err)
	}
	return spawn(ctx, o)
}

func spawn(ctx context.Context, o StartOptions) (*Handle, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start supervisor: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		_ = inR.Close()
		_ = inW.Close()
		return nil, fmt.Errorf("start supervisor: %w", err)
	}
	defer outR.Close()
	cmd := exec.Command(o.Self, Command, o.Dir)
	cmd.Stdin, cmd.Stdout = inR, outW
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	_ = inR.Close()
	_ = outW.Close()
	if err != nil {
		_ = inW.Close()
		return nil, fmt.Errorf("start supervisor: %w", err)
	}
	h := &Handle{Dir: o.Dir, PID: cmd.Process.Pid, reaped: make(chan struct{})}
	go func() { // owned by the child: ends when it exits
		_ = cmd.Wait()
		close(h.reaped)
	}()
	go func() { // owned by the child, which reads stdin to EOF first
		defer inW.Close()
		_, _ = inW.Write(o.Stdin)
	}()
	type report struct {
		pid int
		err error
	}
	ch := make(chan report, 1)
	go func() { // ends when the supervisor reports or exits (pipe closed)
		pid, err := readReport(outR)
		ch <- report{pid, err}
	}()
	timer := time.NewTimer(o.Timeout)
	defer timer.Stop()
	var r report
	select {
	case r = <-ch:
	case <-timer.C:
		r.err = fmt.Errorf("supervisor did not start within %s", o.Timeout)
	case <-ctx.Done():
		r.err = fmt.Errorf("start supervisor: %w", ctx.Err())
	}
	if r.err != nil {
		// Our unreaped child: its PID cannot have been reused. SIGTERM
		// makes it kill a tart exec it may have started just now.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.reaped:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-h.reaped
		}
		return nil, r.err
	}
	h.ExecPID = r.pid
	return h, nil
}

// readReport reads the supervisor's one start line.
func readReport(r io.Reader) (execPID int, err error) {
	line, rerr := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(line, "ok "):
		if _, err := fmt.Sscanf(line, "ok %d", &execPID); err != nil {
			return 0, fmt.Errorf("supervisor sent a bad report %q", line)
		}
		return execPID, nil
	case strings.HasPrefix(line, "error "):
		return 0, errors.New(strings.TrimPrefix(line, "error "))
	case rerr != nil:
		return 0, fmt.Errorf("supervisor exited before reporting: %w", rerr)
	default:
		return 0, fmt.Errorf("supervisor sent a bad report %q", line)
	}
}

// Adopt returns a Handle for a supervisor an earlier process started.
func Adopt(dir string) *Handle { return &Handle{Dir: dir} }

// Child reports whether this process started the supervisor (and so reaps
// it).
func (h *Handle) Child() bool { return h.reaped != nil }

// Status is where a supervisor stands.
type Status struct {
	// Running is true while the supervisor lives and has recorded no exit.
	Running bool
	// Exit is the recorded exit; nil while running, or when the supervisor
	// died without recording one (Lost).
	Exit *Exit
}

// Lost reports a supervisor that is gone without an exit record (killed,
// or its machine rebooted).
func (s Status) Lost() bool { return !s.Running && s.Exit == nil }

// Check returns the status of the supervisor in dir.
func Check(dir string) (Status, error) {
	// Liveness first: the supervisor writes its exit record before its
	// lock goes, so once it is seen dead the record (if any) is readable.
	alive := Alive(dir)
	e, ok, err := ReadExit(dir)
	if err != nil {
		return Status{}, err
	}
	if ok {
		return Status{Exit: &e}, nil
	}
	return Status{Running: alive}, nil
}

// Done returns a channel closed when a child supervisor has exited; nil
// (never ready) for an adopted one: use Wait or Check.
func (h *Handle) Done() <-chan struct{} { return h.reaped }

// Wait blocks until the supervisor is no longer running (reaping it when it
// is our child) or ctx ends, and returns its status.
func (h *Handle) Wait(ctx context.Context) (Status, error) {
	if h.reaped != nil {
		select {
		case <-h.reaped:
			return Check(h.Dir)
		case <-ctx.Done():
			return Status{}, ctx.Err()
		}
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		st, err := Check(h.Dir)
		if err != nil || !st.Running {
			return st, err
		}
		select {
		case <-ctx.Done():
			return Status{}, ctx.Err()
		case <-t.C:
		}
	}
}

// Kill makes the supervisor in dir SIGKILL tart exec's process group, which
// ends the guest command; the exit is recorded with Killed set. It returns
// ErrNotRunning when no supervisor owns dir.
func Kill(dir string) error { return send(dir, "kill") }

// Signal makes the supervisor in dir send sig to tart exec's process
// group. It returns ErrNotRunning when no supervisor owns dir.
func Signal(dir string, sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		return Kill(dir)
	}
	return send(dir, fmt.Sprintf("signal %d", int(sig)))
}

// send writes one command line into dir's control FIFO. Opening a FIFO for
// writing without blocking fails with ENXIO when nobody reads it: the
// supervisor that owned it is gone, and nothing else can receive it.
func send(dir, line string) error {
	f, err := os.OpenFile(filepath.Join(dir, controlFile), os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ENXIO) || errors.Is(err, os.ErrNotExist) {
		return ErrNotRunning
	}
	if err != nil {
		return fmt.Errorf("open supervisor control: %w", err)
	}
	defer f.Close()
	// One write of less than PIPE_BUF bytes is atomic.
	if _, err := f.Write([]byte(line + "\n")); err != nil {
		if errors.Is(err, syscall.EPIPE) {
			return ErrNotRunning
		}
		return fmt.Errorf("write supervisor control: %w", err)
	}
	return nil
}
