// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command nomad-driver-tart is the Nomad task driver plugin for Tart VMs.
// Nomad's agent starts it from its plugin_dir; `--version` prints the
// version; `supervise <dir>` is the detached per-task supervisor the plugin
// starts itself (the same binary, as plugin_dir allows no helpers).
package main

import (
	"os"

	"github.com/tartnomad/nomad-driver-tart/driver"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == driver.SupervisorCommand {
		os.Exit(driver.Supervise(os.Args[2:]))
	}
	sdk.Serve(driver.BinaryName, driver.NewPlugin)
}
