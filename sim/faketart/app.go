// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/version"
)

// app is one faketart invocation.
type app struct {
	stdin          *os.File
	stdout, stderr *os.File
	knobs          knobs
	home           *home
	// heldLock is the config.json descriptor whose POSIX lock this process
	// holds (only in `run`); see lockHolder for why it is never reopened.
	heldLock     *os.File
	heldLockPath string
	// runConfig is the running VM's config as `run` loaded it.
	runConfig VMConfig
}

// Main runs one faketart command line (without the program name) and
// returns the process exit code. It uses the process's standard streams,
// environment and signals, because it stands in for a whole tart process.
func Main(args []string) int {
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	return a.main(args)
}

func (a *app) main(args []string) int {
	k, err := loadKnobs()
	if err != nil {
		fmt.Fprintln(a.stderr, err)
		return exitFailure
	}
	a.knobs = k
	a.logInvocation(args)
	if len(args) == 0 {
		fmt.Fprintln(a.stdout, rootHelp)
		return exitOK
	}
	cmd := args[0]
	switch cmd {
	case "--version":
		fmt.Fprintln(a.stdout, a.knobs.version)
		return exitOK
	case "--faketart-version":
		// The simulator's own version; --version answers as tart.
		fmt.Fprintln(a.stdout, version.Full("faketart"))
		return exitOK
	case "--help", "-h", "help":
		fmt.Fprintln(a.stdout, rootHelp)
		return exitOK
	}
	spec, ok := commandSpecs[cmd]
	if !ok {
		return report(a.stderr, usageErr("", "Unexpected argument '%s'", cmd))
	}
	p, err := spec.parse(args[1:])
	if errors.Is(err, errHelp) {
		fmt.Fprintf(a.stdout, "USAGE: %s\n\n  See 'tart --help' for the other commands.\n", spec.usage)
		return exitOK
	}
	if err != nil {
		return report(a.stderr, err)
	}
	h, err := openHome()
	if err != nil {
		return report(a.stderr, err)
	}
	a.home = h
	if cmd != "pull" && cmd != "clone" {
		h.gcTmp()
	}
	return report(a.stderr, a.dispatch(cmd, spec, p))
}

func (a *app) dispatch(cmd string, spec *commandSpec, p *parsedArgs) error {
	switch cmd {
	case "clone":
		return a.cmdClone(spec, p)
	case "pull":
		return a.cmdPull(spec, p)
	case "set":
		return a.cmdSet(spec, p)
	case "get":
		return a.cmdGet(spec, p)
	case "list":
		return a.cmdList(spec, p)
	case "run":
		return a.cmdRun(spec, p)
	case "ip":
		return a.cmdIP(spec, p)
	case "exec":
		return a.cmdExec(spec, p)
	case "stop":
		return a.cmdStop(spec, p)
	case "suspend":
		return a.cmdSuspend(p)
	case "delete":
		return a.cmdDelete(p)
	case "prune":
		return a.cmdPrune(spec, p)
	case "create":
		return a.cmdCreate(spec, p)
	case "rename":
		return a.cmdRename(spec, p)
	case "fqn":
		return a.cmdFQN(p)
	case "login":
		return a.cmdLogin(p)
	}
	return usageErr("", "Unexpected argument '%s'", cmd)
}

// logInvocation appends one JSON line per call to FAKETART_LOG, so tests can
// assert on the exact argv a wrapper used.
func (a *app) logInvocation(args []string) {
	if a.knobs.logFile == "" {
		return
	}
	line, err := json.Marshal(struct {
		Time string   `json:"time"`
		PID  int      `json:"pid"`
		Args []string `json:"args"`
	}{time.Now().UTC().Format(time.RFC3339Nano), os.Getpid(), args})
	if err != nil {
		return
	}
	f, err := os.OpenFile(a.knobs.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.Write(append(line, '\n'))
}

func (a *app) out(format string, args ...any) {
	fmt.Fprintf(a.stdout, format+"\n", args...)
}

const rootHelp = `OVERVIEW: faketart simulates the tart CLI (macOS VMs on Apple Silicon) for tests.

USAGE: tart <subcommand>

SUBCOMMANDS:
  create, clone, run, set, get, list, login, ip, exec, pull, prune, rename,
  stop, delete, suspend, fqn

  See 'tart help <subcommand>' for detailed help.`

func isRemoteName(name string) bool { return strings.Contains(name, "/") }
