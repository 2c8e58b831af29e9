// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command nomad-driver-tart is the Nomad task driver plugin for Tart VMs.
// Nomad's agent starts it from its plugin_dir; `--version` prints the
// version; `supervise <dir>` is the detached per-task supervisor the plugin
// starts itself (the same binary, as plugin_dir allows no helpers; see
// internal/supervisor).
package main

import (
	"github.com/tartnomad/nomad-driver-tart/driver"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
)

func main() {
	supervisor.MainIfInvoked()
	sdk.Serve(driver.BinaryName, driver.NewPlugin)
}
