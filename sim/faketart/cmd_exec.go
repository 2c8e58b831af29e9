// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

func itoa(n int) string { return strconv.Itoa(n) }

// agentErr is exec's failure to reach the guest agent (exit 1).
func agentErr(details string) error {
	return bareErr(exitFailure, "Failed to connect to the VM using its control socket: %s, is the Tart Guest Agent running?", details)
}

func (a *app) cmdExec(_ *commandSpec, p *parsedArgs) error {
	name := p.pos[0]
	argv := p.rest
	dir, err := a.home.openLocal(name)
	if err != nil {
		return err
	}
	st, pid := a.state(dir)
	if st != stateRunning {
		return bareErr(exitVMState, "VM \"%s\" is not running", name)
	}
	if a.shouldFail("exec") {
		return agentErr(a.failMessage("exec", "faketart injected exec failure"))
	}
	if err := a.waitAgent(dir, pid); err != nil {
		return err
	}
	tty := p.has("tty")
	if tty && !isTerminal(a.stdout) {
		dieByTrap() // tart traps reading the window size of a non-terminal
	}
	if handled, err := a.guestBuiltin(dir, argv); handled {
		return err
	}
	return a.runGuestCommand(dir, pid, argv, p.has("interactive"), tty)
}

// waitAgent waits up to FAKETART_EXEC_CONNECT_TIMEOUT for the agent of the
// VM run by runPID to answer.
func (a *app) waitAgent(dir string, runPID int) error {
	deadline := time.Now().Add(a.knobs.execTimeout)
	for {
		if a.agentReady(dir) {
			return nil
		}
		if st, pid := a.state(dir); st != stateRunning || pid != runPID {
			return agentErr("the VM stopped before its guest agent answered")
		}
		if !time.Now().Before(deadline) {
			return agentErr("guest agent did not answer within " + a.knobs.execTimeout.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// forwardedSignals are passed from `faketart exec` to the guest command.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
}

// runGuestCommand runs argv on the host with the VM's guest directory as
// cwd and HOME, the guest agent's fixed environment, real streams, signal
// forwarding, and the command's exit status as faketart's.
func (a *app) runGuestCommand(dir string, runPID int, argv []string, interactive, tty bool) error {
	guest := filepath.Join(dir, dirGuest)
	if err := os.MkdirAll(guest, 0o755); err != nil {
		return prefixedErr("%v", err)
	}
	path := a.knobs.guestPath
	env := []string{"PATH=" + path, "HOME=" + guest, "USER=admin", "LOGNAME=admin", "SHELL=/bin/sh", "PWD=" + guest}
	if tty {
		term := os.Getenv("TERM")
		if term == "" {
			term = "xterm-256color"
		}
		env = append(env, "TERM="+term)
	}
	prog, err := lookPathIn(argv[0], path, guest)
	if err != nil {
		return prefixedErr("%v", err)
	}
	cmd := exec.Command(prog, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = guest
	cmd.Env = env
	cmd.Stdout = a.stdout
	cmd.Stderr = a.stderr
	if tty {
		cmd.Stderr = a.stdout // a PTY merges the streams
	}
	if interactive {
		cmd.Stdin = a.stdin
	}
	// Its own process group (so the VM's stop can kill everything it
	// started) unless it must stay in the terminal's foreground group.
	ownGroup := !tty
	cmd.SysProcAttr = guestProcAttr(ownGroup)

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)

	// Pdeathsig follows the thread that started the child: keep it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return prefixedErr("%v", err)
	}
	marker := ""
	if ownGroup {
		marker = filepath.Join(dir, dirFake, "execs", itoa(cmd.Process.Pid))
		start, _ := procStartTime(cmd.Process.Pid)
		_ = os.WriteFile(marker, []byte(start), 0o644)
	}
	target := cmd.Process.Pid
	if ownGroup {
		target = -target
	}
	return a.superviseGuestCommand(cmd, dir, runPID, target, marker, sigs)
}

// superviseGuestCommand forwards signals to the command (target is its pid
// or -pgid), kills it when the VM stops, and maps its end to an exit code.
func (a *app) superviseGuestCommand(cmd *exec.Cmd, dir string, runPID, target int, marker string, sigs <-chan os.Signal) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	vmCheck := time.NewTicker(100 * time.Millisecond)
	defer vmCheck.Stop()
	vmGone := func() bool {
		st, pid := a.state(dir)
		return st != stateRunning || pid != runPID
	}
	killed := false
	for {
		select {
		case s := <-sigs:
			if sig, ok := s.(syscall.Signal); ok {
				_ = syscall.Kill(target, sig)
			}
		case <-vmCheck.C:
			if !killed && vmGone() {
				killed = true
				_ = syscall.Kill(target, syscall.SIGKILL)
			}
		case err := <-done:
			// Keep the marker while background processes of the command
			// live on in its group: stopping the VM must kill them.
			if marker != "" && syscall.Kill(target, 0) != nil {
				_ = os.Remove(marker)
			}
			if killed || vmGone() { // the VM went away and took the command with it
				return prefixedErr("unavailable (14): the VM stopped while the command was running")
			}
			return exitStatus(err)
		}
	}
}

// exitStatus maps a command's end to tart exec's exit code: its status, or
// 255 (-1) when a signal killed it.
func exitStatus(err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return prefixedErr("%v", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return &exitCodeErr{code: 255}
	}
	return &exitCodeErr{code: ee.ExitCode()}
}

// lookPathIn resolves a program name against the guest PATH (not the
// caller's), the way the agent would.
func lookPathIn(name, path, cwd string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	if filepath.Base(name) != name {
		return filepath.Join(cwd, name), nil
	}
	for _, d := range filepath.SplitList(path) {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &exec.Error{Name: name, Err: exec.ErrNotFound}
}
