// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every failure of a tart command is an *Error that matches
// ErrFailed plus, when tart's exit code and message say more, one or more of
// the specific sentinels below (errors.Is works for all of them).
var (
	// ErrFailed matches every failed tart command.
	ErrFailed = errors.New("tart command failed")
	// ErrNotFound matches a missing VM or a missing image.
	ErrNotFound = errors.New("not found")
	// ErrVMNotFound: the named local VM does not exist (also matches
	// ErrNotFound).
	ErrVMNotFound = errors.New("vm does not exist")
	// ErrImageNotFound: the registry has no such image (also matches
	// ErrNotFound).
	ErrImageNotFound = errors.New("image not found")
	// ErrNotRunning: the VM is not running (stop, exec, suspend).
	ErrNotRunning = errors.New("vm is not running")
	// ErrAlreadyRunning: tart run found the VM already running.
	ErrAlreadyRunning = errors.New("vm is already running")
	// ErrVMRunning: tart delete refused a running VM.
	ErrVMRunning = errors.New("vm is running")
	// ErrVMLimit: the host's concurrent VM limit (two macOS guests) was
	// reached.
	ErrVMLimit = errors.New("vm limit reached")
	// ErrAgentNotReady: tart exec could not reach the guest agent (not
	// installed, not started yet, stale control socket).
	ErrAgentNotReady = errors.New("guest agent not ready")
	// ErrNoIP: tart ip found no address.
	ErrNoIP = errors.New("no ip address found")
	// ErrUsage: tart rejected the arguments (exit 64).
	ErrUsage = errors.New("invalid tart arguments")
)

// Error is a failed tart command.
type Error struct {
	// Op is the tart subcommand ("clone", "run", "exec", ...).
	Op string
	// VM is the VM or image the command was about, if any.
	VM string
	// ExitCode is tart's exit code (-1 when it was killed or never ran).
	ExitCode int
	// Message is tart's own message: the first non-empty stderr line.
	Message string
	// kinds are the sentinels this failure matches besides ErrFailed.
	kinds []error
	// cause is an underlying Go error (e.g. the binary could not start).
	cause error
}

// Error formats as "tart <op> <vm>: <message> (exit <code>)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("tart ")
	b.WriteString(e.Op)
	if e.VM != "" {
		b.WriteString(" ")
		b.WriteString(e.VM)
	}
	b.WriteString(": ")
	switch {
	case e.Message != "":
		b.WriteString(e.Message)
	case e.cause != nil:
		b.WriteString(e.cause.Error())
	default:
		b.WriteString("failed")
	}
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, " (exit %d)", e.ExitCode)
	}
	return b.String()
}

// Unwrap returns ErrFailed, the matching sentinels and the cause.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, len(e.kinds)+2)
	errs = append(errs, ErrFailed)
	errs = append(errs, e.kinds...)
	if e.cause != nil {
		errs = append(errs, e.cause)
	}
	return errs
}

// firstLine returns the first non-empty line of s, trimmed.
func firstLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if l := strings.TrimSpace(stripANSI(line)); l != "" {
			return l
		}
	}
	return ""
}

// classify maps tart's exit code and stderr to sentinels, following the
// message shapes tart 2.x prints (see README "Errors").
func classify(code int, stderr string) []error {
	var kinds []error
	has := func(sub string) bool { return strings.Contains(stderr, sub) }
	switch {
	case has("does not exist") && has(`VM "`):
		kinds = append(kinds, ErrVMNotFound, ErrNotFound)
	case has("is already running"):
		kinds = append(kinds, ErrAlreadyRunning)
	case has("is not running"):
		kinds = append(kinds, ErrNotRunning)
	case has("is running") && code == 1:
		kinds = append(kinds, ErrVMRunning)
	}
	if has("exceeds the system limit") || has("maximum supported number of active virtual machines") ||
		(has("VZErrorDomain") && has("Code=6 ")) {
		kinds = append(kinds, ErrVMLimit)
	}
	if has("Failed to connect to the VM using its control socket") || has("Tart Guest Agent running") {
		kinds = append(kinds, ErrAgentNotReady)
	}
	if has("no IP address found") {
		kinds = append(kinds, ErrNoIP)
	}
	if has("code: 404") || has("NAME_UNKNOWN") || has("MANIFEST_UNKNOWN") {
		kinds = append(kinds, ErrImageNotFound, ErrNotFound)
	}
	if code == 64 {
		kinds = append(kinds, ErrUsage)
	}
	return kinds
}

// newError builds the *Error for a tart command that exited with code and
// printed stderr.
func newError(op, vm string, code int, stderr string, cause error) *Error {
	return &Error{
		Op:       op,
		VM:       vm,
		ExitCode: code,
		Message:  firstLine(stderr),
		kinds:    classify(code, stderr),
		cause:    cause,
	}
}
