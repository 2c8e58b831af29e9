// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package cliflags parses a command's flags the way every binary of this
// repository answers them: --help (or -h) prints the usage on stdout and
// ends the command with exit code 0; a bad flag prints the error and the
// usage on stderr and ends it with 2. The standard flag package prints
// both on one writer and reports --help as an error.
package cliflags

import (
	"bytes"
	"errors"
	"flag"
	"io"
)

// ExitUsage is the exit code of a bad command line.
const ExitUsage = 2

// Parse parses args into fs. ok is true when the command should go on;
// otherwise code is its exit code (0 after --help, ExitUsage on a bad
// flag). fs's output is stderr afterwards, for the command's own messages.
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = io.Copy(stdout, &out)
		return 0, false
	case err != nil:
		_, _ = io.Copy(stderr, &out)
		return ExitUsage, false
	}
	return 0, true
}
