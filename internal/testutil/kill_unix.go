// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testutil

import "syscall"

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
