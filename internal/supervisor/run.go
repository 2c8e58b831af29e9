// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package supervisor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tartnomad/nomad-driver-tart/internal/atomicfile"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// maxStdin bounds what the supervisor reads from its own stdin.
const maxStdin = 16 << 20

// Main is the supervisor sub-command: args = <state dir>. It takes the
// directory's lock, runs `tart exec -i <vm> <argv>` with the spec's output
// files, feeds it its own stdin followed by the spec's stdin file, reports
// "ok <exec pid>" (or "error <text>") on stdout, obeys the control FIFO,
// and records the exit in exit.json. SIGTERM kills tart exec (as Kill
// does). It returns the process exit code.
func Main(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: "+Command+" <state dir>")
		return 2
	}
	s := &supervisor{dir: args[0], report: os.Stdout}
	return s.run()
}

type supervisor struct {
	dir    string
	spec   Spec
	report *os.File // stdout until the start is reported

	mu     sync.Mutex
	pgid   int  // tart exec's process group once started
	killed bool // Kill (or SIGTERM) arrived
}

func (s *supervisor) run() int {
	if f, err := os.OpenFile(filepath.Join(s.dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		os.Stderr = f
	}
	// SIGHUP and SIGINT must not end the supervisor. They are caught, not
	// ignored: an ignored signal stays ignored in tart exec and, through
	// it, possibly in the guest command, which could then not trap it.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGINT)
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	go func() { // lives as long as the process
		for range terms {
			s.kill()
		}
	}()
	lk, err := lock(s.dir)
	if err != nil {
		// Not recorded: the directory belongs to the supervisor that holds
		// the lock.
		s.tell("error failed to lock state dir: " + err.Error())
		return 1
	}
	defer lk.Close()
	if err := s.openControl(); err != nil {
		return s.fail(err)
	}
	spec, err := ReadSpec(s.dir)
	if err != nil {
		return s.fail(err)
	}
	s.spec = spec
	in, err := io.ReadAll(io.LimitReader(os.Stdin, maxStdin))
	if err != nil {
		return s.fail(fmt.Errorf("failed to read the command's input: %w", err))
	}
	st := s.execute(in)
	st.FinishedAt = time.Now()
	b, _ := json.Marshal(st)
	if err := atomicfile.Write(filepath.Join(s.dir, ExitFile), b, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "failed to record exit status: %v\n", err)
		return 1
	}
	return 0
}

// openControl creates the control FIFO and serves it for the life of the
// process. It is opened read-write so it never reads EOF between writers.
func (s *supervisor) openControl() error {
	p := filepath.Join(s.dir, controlFile)
	_ = os.Remove(p)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		return fmt.Errorf("failed to create control fifo: %w", err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("failed to open control fifo: %w", err)
	}
	go func() { // lives as long as the process
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			s.command(sc.Text())
		}
	}()
	return nil
}

func (s *supervisor) command(line string) {
	switch {
	case line == "kill":
		s.kill()
	case strings.HasPrefix(line, "signal "):
		n, err := strconv.Atoi(strings.TrimPrefix(line, "signal "))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "ignored bad control command %q\n", line)
			return
		}
		s.mu.Lock()
		pgid := s.pgid
		s.mu.Unlock()
		if pgid > 0 {
			_ = syscall.Kill(-pgid, syscall.Signal(n))
		}
	default:
		fmt.Fprintf(os.Stderr, "ignored unknown control command %q\n", line)
	}
}

// kill SIGKILLs tart exec's group, now or as soon as it starts.
func (s *supervisor) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killed = true
	if s.pgid > 0 {
		_ = syscall.Kill(-s.pgid, syscall.SIGKILL)
	}
}

// fail reports a start failure to the starter (if it still listens) and
// records it as the exit status.
func (s *supervisor) fail(err error) int {
	s.tell("error " + err.Error())
	b, _ := json.Marshal(Exit{ExitCode: -1, Err: err.Error(), FinishedAt: time.Now()})
	_ = atomicfile.Write(filepath.Join(s.dir, ExitFile), b, 0o600)
	return 1
}

// tell writes the one start report line and closes stdout: the starter may
// be gone later, and a broken pipe must not matter.
func (s *supervisor) tell(line string) {
	if s.report == nil {
		return
	}
	_, _ = fmt.Fprintln(s.report, line)
	_ = s.report.Close()
	s.report = nil
}

// openOutput opens an output path for writing; without CreateOutput it
// must exist (a FIFO the log collector made).
func (s *supervisor) openOutput(path string) (*os.File, error) {
	flags := os.O_WRONLY
	if s.spec.CreateOutput {
		flags |= os.O_CREATE | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open output %s: %w", path, err)
	}
	return f, nil
}

// openStreams opens stdout, stderr (the same file when the paths are equal)
// and the stdin file. They stay open for the command's whole life, across
// restarts of the starter.
func (s *supervisor) openStreams() (stdout, stderr, payload *os.File, err error) {
	if stdout, err = s.openOutput(s.spec.StdoutPath); err != nil {
		return nil, nil, nil, err
	}
	if s.spec.StderrPath == s.spec.StdoutPath {
		stderr = stdout
	} else if stderr, err = s.openOutput(s.spec.StderrPath); err != nil {
		_ = stdout.Close()
		return nil, nil, nil, err
	}
	if s.spec.StdinFile != "" {
		if payload, err = os.Open(s.spec.StdinFile); err != nil {
			_ = stdout.Close()
			_ = stderr.Close()
			return nil, nil, nil, fmt.Errorf("failed to open stdin_file: %w", err)
		}
	}
	return stdout, stderr, payload, nil
}

// execute runs tart exec to completion.
func (s *supervisor) execute(in []byte) Exit {
	stdout, stderr, payload, err := s.openStreams()
	if err != nil {
		return s.startFailed(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	if payload != nil {
		defer payload.Close()
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return s.startFailed(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return s.startFailed(err)
	}
	cmd := exec.Command(s.spec.TartPath, append([]string{"exec", "-i", s.spec.VM}, s.spec.Argv...)...)
	cmd.Env = append(os.Environ(), s.spec.TartEnv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, stdout, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.mu.Lock()
	if s.killed {
		s.mu.Unlock()
		return s.startFailed(errors.New("killed before the command started"))
	}
	err = cmd.Start()
	if err == nil {
		s.pgid = cmd.Process.Pid
	}
	s.mu.Unlock()
	if err != nil {
		return s.startFailed(fmt.Errorf("failed to start tart exec: %w", err))
	}
	_ = inR.Close()
	_ = errW.Close()
	s.tell(fmt.Sprintf("ok %d", cmd.Process.Pid))

	go feedStdin(inW, in, payload) // ends when tart exec's stdin closes
	tail := &lastLineWriter{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(io.MultiWriter(stderr, tail), errR)
	}()
	werr := cmd.Wait()
	// Guest processes that outlive tart exec may hold the stderr pipe;
	// do not wait for them for long.
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
		_ = errR.Close()
	}
	s.mu.Lock()
	killed := s.killed
	s.pgid = 0
	s.mu.Unlock()
	return s.status(werr, killed, tail.last())
}

func (s *supervisor) startFailed(err error) Exit {
	s.tell("error " + err.Error())
	return Exit{ExitCode: -1, Err: err.Error()}
}

// status turns tart exec's end into the command's exit record.
func (s *supervisor) status(werr error, killed bool, lastStderr string) Exit {
	if killed {
		return Exit{ExitCode: 128 + int(syscall.SIGKILL), Signal: int(syscall.SIGKILL), Killed: true}
	}
	code := 0
	if werr != nil {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			return Exit{ExitCode: -1, Err: werr.Error()}
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return Exit{ExitCode: 128 + int(ws.Signal()), Signal: int(ws.Signal()),
				Err: "tart exec was killed by " + ws.Signal().String()}
		}
		code = ee.ExitCode()
	}
	if err := tart.ExecFailure(s.spec.VM, code, lastStderr); err != nil {
		return Exit{ExitCode: code, Err: err.Error()}
	}
	return Exit{ExitCode: code}
}

// feedStdin writes in, then the payload, then closes stdin. A guest command
// that does not read its stdin makes the write fail with EPIPE once it
// exits; that is not an error.
func feedStdin(w *os.File, in []byte, payload *os.File) {
	defer w.Close()
	if _, err := w.Write(in); err != nil {
		return
	}
	if payload != nil {
		_, _ = io.Copy(w, payload)
	}
}

// lastLineWriter remembers the last non-empty line written to it.
type lastLineWriter struct {
	mu      sync.Mutex
	partial []byte
	line    string
}

func (w *lastLineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if l := strings.TrimSpace(string(w.partial[:i])); l != "" {
			w.line = l
		}
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 4096 {
		w.partial = w.partial[len(w.partial)-4096:]
	}
	return len(p), nil
}

func (w *lastLineWriter) last() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if l := strings.TrimSpace(string(w.partial)); l != "" {
		return l
	}
	return w.line
}
