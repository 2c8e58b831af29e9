// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

//go:build !unix

package tart

import (
	"os"
	"syscall"
)

// Tart only runs on macOS; these fallbacks keep the package (and binaries
// importing it) building elsewhere, without process groups or sessions.

func groupAttr() *syscall.SysProcAttr   { return nil }
func sessionAttr() *syscall.SysProcAttr { return nil }

func killGroup(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Signal(sig)
}
