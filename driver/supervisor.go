// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

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
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tartnomad/nomad-driver-tart/tart"
)

// SupervisorCommand is the sub-command that makes the plugin binary run as
// a task supervisor instead of a plugin: `nomad-driver-tart supervise
// <state dir>`. Nomad runs every executable in plugin_dir as a plugin, so
// the helper is the plugin binary itself (as Nomad's own executor is).
const SupervisorCommand = "supervise"

// Files of a task's state directory.
const (
	specFile       = "spec.json"       // supervisorSpec, written by the driver
	lockFile       = "supervisor.lock" // flock held by the live supervisor
	exitFile       = "exit.json"       // exitStatus, written atomically at the end
	supervisorLog  = "supervisor.log"  // the supervisor's own stderr
	guestPIDFile   = ".ntart-task.pid" // in the guest's $HOME: the guest command's PID
	envBlockEnd    = "."               // line ending the env block on the guest's stdin
	supervisorArg0 = "ntart"           // $0 of the guest wrapper shell
)

// supervisorSpec is what the supervisor runs. It holds no secrets: the
// task environment arrives on the supervisor's stdin, the payload is read
// from StdinFile by the supervisor itself.
type supervisorSpec struct {
	TartPath string   `json:"tart_path"`
	TartEnv  []string `json:"tart_env"`
	VM       string   `json:"vm"`
	// Argv is the guest argv (wrapper shell included).
	Argv       []string `json:"argv"`
	StdinFile  string   `json:"stdin_file,omitempty"`
	StdoutPath string   `json:"stdout_path"`
	StderrPath string   `json:"stderr_path"`
	// TaskDir lets the reconcile tell a stale state dir (allocation gone)
	// from a live one.
	TaskDir string `json:"task_dir"`
}

// exitStatus is the supervisor's record of how the guest command ended.
type exitStatus struct {
	ExitCode   int       `json:"exit_code"`
	Signal     int       `json:"signal"`
	Err        string    `json:"err,omitempty"`
	FinishedAt time.Time `json:"finished_at"`
}

// guestWrapper is run by /bin/sh in the guest. It reads the task's
// environment from stdin (KEY=value lines, backslash escapes for newlines,
// ended by a "." line), records its PID in $HOME so signals can be
// delivered with another tart exec, and execs the command (same PID) with
// the rest of stdin (the payload, if any). The shell reads one byte at a
// time from a pipe, so it never consumes the payload. It execs rather than
// running the command in the background because a non-interactive shell
// starts background jobs with SIGINT ignored, which would defeat
// kill_signal = "SIGINT".
const guestWrapper = `__ntart_pf="${HOME:-/tmp}/` + guestPIDFile + `"
while IFS= read -r __ntart_l; do
  [ "$__ntart_l" = "` + envBlockEnd + `" ] && break
  __ntart_k=${__ntart_l%%=*}
  __ntart_v=${__ntart_l#*=}
  case $__ntart_v in *\\*) __ntart_v=$(printf '%b' "$__ntart_v") ;; esac
  export "$__ntart_k=$__ntart_v"
done
unset __ntart_l __ntart_k __ntart_v
echo "$$" > "$__ntart_pf"
unset __ntart_pf
exec "$@"
`

// guestArgv wraps the task's command in guestWrapper.
func guestArgv(command string, args []string) []string {
	return append([]string{"/bin/sh", "-c", guestWrapper, supervisorArg0, command}, args...)
}

// signalArgv is the guest argv that delivers sig (e.g. "TERM") to the
// task's command.
func signalArgv(sig string) []string {
	// The PID file is written right after the command starts: wait up to
	// 5 s for it, so a signal sent just after StartTask is not lost.
	const script = `f="${HOME:-/tmp}/` + guestPIDFile + `"; i=0
while [ ! -s "$f" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
kill -s "$1" "$(cat "$f")"`
	return []string{"/bin/sh", "-c", script, supervisorArg0, sig}
}

var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envBlock encodes env for guestWrapper. Keys that are not shell names are
// skipped (export would abort the wrapper).
func envBlock(env map[string]string) []byte {
	keys := make([]string, 0, len(env))
	for k := range env {
		if envKeyRE.MatchString(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b bytes.Buffer
	esc := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`)
	for _, k := range keys {
		b.WriteString(k + "=" + esc.Replace(env[k]) + "\n")
	}
	b.WriteString(envBlockEnd + "\n")
	return b.Bytes()
}

// Supervise is the supervisor sub-command: args = <state dir>. It runs
// `tart exec -i <vm> <argv>` with the task's log FIFOs, feeds it the env
// block from its own stdin followed by the stdin file, reports
// "ok <exec pid>" (or "error <text>") on stdout, and records the exit
// status in exit.json. SIGTERM kills tart exec (which cancels the guest
// command). It returns the process exit code.
func Supervise(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: nomad-driver-tart supervise <state dir>")
		return 2
	}
	s := &supervisor{dir: args[0]}
	return s.run()
}

type supervisor struct {
	dir    string
	spec   supervisorSpec
	report *os.File // stdout until the start is reported
}

func (s *supervisor) run() int {
	s.report = os.Stdout
	if f, err := os.OpenFile(filepath.Join(s.dir, supervisorLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		os.Stderr = f
	}
	// SIGHUP and SIGINT must not end the supervisor. They are caught, not
	// ignored: an ignored signal stays ignored in tart exec and, through
	// it, possibly in the guest command, which could then not trap it.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGINT)
	lock, err := lockDir(s.dir)
	if err != nil {
		return s.fail(fmt.Errorf("failed to lock state dir: %w", err))
	}
	defer lock.Close()
	if err := s.readSpec(); err != nil {
		return s.fail(err)
	}
	env, err := io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
	if err != nil {
		return s.fail(fmt.Errorf("failed to read task environment: %w", err))
	}
	st := s.execute(env)
	st.FinishedAt = time.Now()
	b, _ := json.Marshal(st)
	if err := writeFileAtomic(filepath.Join(s.dir, exitFile), b); err != nil {
		fmt.Fprintf(os.Stderr, "failed to record exit status: %v\n", err)
		return 1
	}
	return 0
}

func (s *supervisor) readSpec() error {
	b, err := os.ReadFile(filepath.Join(s.dir, specFile))
	if err != nil {
		return fmt.Errorf("failed to read supervisor spec: %w", err)
	}
	if err := json.Unmarshal(b, &s.spec); err != nil {
		return fmt.Errorf("failed to decode supervisor spec: %w", err)
	}
	return nil
}

// fail reports a start failure to the driver (if it still listens) and
// records it as the exit status.
func (s *supervisor) fail(err error) int {
	s.tell("error " + err.Error())
	b, _ := json.Marshal(exitStatus{ExitCode: -1, Err: err.Error(), FinishedAt: time.Now()})
	_ = writeFileAtomic(filepath.Join(s.dir, exitFile), b)
	return 1
}

// tell writes the one start report line and closes stdout: the driver may
// be gone later, and a broken pipe must not matter.
func (s *supervisor) tell(line string) {
	if s.report == nil {
		return
	}
	_, _ = fmt.Fprintln(s.report, line)
	_ = s.report.Close()
	s.report = nil
}

// openStreams opens the task's log FIFOs (write side, never created: the
// log collector made them) and the stdin file. The FIFOs stay open for the
// command's whole life, across plugin restarts.
func (s *supervisor) openStreams() (stdout, stderr, payload *os.File, err error) {
	closeAll := func() {
		for _, f := range []*os.File{stdout, stderr, payload} {
			if f != nil {
				_ = f.Close()
			}
		}
	}
	if stdout, err = os.OpenFile(s.spec.StdoutPath, os.O_WRONLY, 0); err != nil {
		return nil, nil, nil, fmt.Errorf("failed to open stdout %s: %w", s.spec.StdoutPath, err)
	}
	if stderr, err = os.OpenFile(s.spec.StderrPath, os.O_WRONLY, 0); err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("failed to open stderr %s: %w", s.spec.StderrPath, err)
	}
	if s.spec.StdinFile != "" {
		if payload, err = os.Open(s.spec.StdinFile); err != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("failed to open stdin_file: %w", err)
		}
	}
	return stdout, stderr, payload, nil
}

// execute runs tart exec to completion.
func (s *supervisor) execute(env []byte) exitStatus {
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
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		return s.startFailed(fmt.Errorf("failed to start tart exec: %w", err))
	}
	_ = inR.Close()
	_ = errW.Close()
	s.tell(fmt.Sprintf("ok %d", cmd.Process.Pid))

	go feedStdin(inW, env, payload)
	tail := &lastLineWriter{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(io.MultiWriter(stderr, tail), errR)
	}()
	// byDriver is written only by the goroutine below and read only after
	// killed.Wait, which orders the two.
	byDriver := false
	done := make(chan struct{})
	var killed sync.WaitGroup
	killed.Add(1)
	go func() {
		defer killed.Done()
		select {
		case <-terms:
			byDriver = true
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-done:
		}
	}()
	werr := cmd.Wait()
	close(done)
	killed.Wait()
	// Guest processes that outlive tart exec may hold the stderr pipe;
	// do not wait for them for long.
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
		_ = errR.Close()
	}
	return s.status(werr, byDriver, tail.last())
}

func (s *supervisor) startFailed(err error) exitStatus {
	s.tell("error " + err.Error())
	return exitStatus{ExitCode: -1, Err: err.Error()}
}

// status turns tart exec's end into the task's exit status.
func (s *supervisor) status(werr error, byDriver bool, lastStderr string) exitStatus {
	if byDriver {
		return exitStatus{ExitCode: 128 + int(syscall.SIGKILL), Signal: int(syscall.SIGKILL)}
	}
	code := 0
	if werr != nil {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			return exitStatus{ExitCode: -1, Err: werr.Error()}
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exitStatus{ExitCode: 128 + int(ws.Signal()), Signal: int(ws.Signal()),
				Err: "tart exec was killed by " + ws.Signal().String()}
		}
		code = ee.ExitCode()
	}
	if err := tart.ExecFailure(s.spec.VM, code, lastStderr); err != nil {
		return exitStatus{ExitCode: code, Err: err.Error()}
	}
	return exitStatus{ExitCode: code}
}

// feedStdin writes the env block, then the payload, then closes stdin. A
// guest command that does not read its stdin makes the write fail with
// EPIPE once it exits; that is not an error.
func feedStdin(w *os.File, env []byte, payload *os.File) {
	defer w.Close()
	if _, err := w.Write(env); err != nil {
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

// writeFileAtomic writes via a temporary file and rename, so a reader
// never sees a partial file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readExitStatus returns the recorded exit status; ok is false while there
// is none.
func readExitStatus(dir string) (exitStatus, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, exitFile))
	if errors.Is(err, os.ErrNotExist) {
		return exitStatus{}, false, nil
	}
	if err != nil {
		return exitStatus{}, false, fmt.Errorf("read exit status: %w", err)
	}
	var st exitStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return exitStatus{}, false, fmt.Errorf("decode exit status: %w", err)
	}
	return st, true, nil
}

// lockDir takes the supervisor's exclusive flock on its state dir. The
// kernel drops it when the supervisor dies, however it dies, so a new
// plugin process can tell a live supervisor from a dead one without
// trusting PIDs, which get reused.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("another supervisor holds %s: %w", dir, err)
	}
	return f, nil
}

// supervisorAlive reports whether a supervisor holds dir's lock.
func supervisorAlive(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
