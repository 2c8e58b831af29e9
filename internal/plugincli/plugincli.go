// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package plugincli answers --help for the Nomad plugin binaries before
// go-plugin serves: run by hand, go-plugin only prints that the binary is
// a plugin and exits 1. (--version is the sdk's, from the same version
// package.)
package plugincli

import (
	"fmt"
	"io"
)

// Help prints usage on w and reports true when the first argument asks
// for help (--help, -help, -h or help). Later arguments are left alone:
// they come from the agent.
func Help(args []string, w io.Writer, usage string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "--help", "-help", "-h", "help":
		_, _ = fmt.Fprint(w, usage)
		return true
	}
	return false
}
