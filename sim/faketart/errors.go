// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit codes of tart.
const (
	exitOK         = 0
	exitFailure    = 1
	exitVMState    = 2
	exitValidation = 64
)

// errShape says how an error is printed on stderr.
type errShape int

const (
	// shapeBare prints the message alone: tart's own RuntimeErrors.
	shapeBare errShape = iota
	// shapePrefixed prints "Error: <message>": other runtime errors, and
	// RuntimeErrors raised inside a command's validation step.
	shapePrefixed
	// shapeUsage prints "Error: <message>" and the command's usage block.
	shapeUsage
)

// cliError is an error that knows its exit code and stderr shape.
type cliError struct {
	code  int
	shape errShape
	msg   string
	cmd   string // for shapeUsage
}

func (e *cliError) Error() string { return e.msg }

// bareErr is a tart RuntimeError: message alone on stderr.
func bareErr(code int, format string, a ...any) error {
	return &cliError{code: code, shape: shapeBare, msg: fmt.Sprintf(format, a...)}
}

// prefixedErr is "Error: <message>", exit 1.
func prefixedErr(format string, a ...any) error {
	return &cliError{code: exitFailure, shape: shapePrefixed, msg: fmt.Sprintf(format, a...)}
}

// usageErr is a validation error: "Error: <message>" plus usage, exit 64.
func usageErr(cmd, format string, a ...any) error {
	return &cliError{code: exitValidation, shape: shapeUsage, cmd: cmd, msg: fmt.Sprintf(format, a...)}
}

// exitCodeErr ends the process with a code and prints nothing more (the
// command already printed what it had to, or passes a guest status through).
type exitCodeErr struct{ code int }

func (e *exitCodeErr) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func vmNotFound(name string) string {
	return fmt.Sprintf("the specified VM \"%s\" does not exist", name)
}

// report prints err in tart's shape and returns the exit code.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var ec *exitCodeErr
	if errors.As(err, &ec) {
		return ec.code
	}
	var ce *cliError
	if !errors.As(err, &ce) {
		fmt.Fprintf(stderr, "Error: %s\n", err.Error())
		return exitFailure
	}
	switch ce.shape {
	case shapeBare:
		fmt.Fprintln(stderr, ce.msg)
	case shapePrefixed:
		fmt.Fprintf(stderr, "Error: %s\n", ce.msg)
	case shapeUsage:
		fmt.Fprintf(stderr, "Error: %s\n", ce.msg)
		fmt.Fprintf(stderr, "Usage: %s\n", usageLine(ce.cmd))
		fmt.Fprintf(stderr, "  See 'tart %s' for more information.\n", strings.TrimSpace(ce.cmd+" --help"))
	}
	return ce.code
}
