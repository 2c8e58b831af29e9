// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command nomad-driver-tart is the Nomad task driver plugin for Tart VMs.
// Nomad's agent starts it from its plugin_dir; `--version` prints the version.
package main

import (
	"github.com/tartnomad/nomad-driver-tart/driver"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

func main() {
	sdk.Serve(driver.BinaryName, driver.NewPlugin)
}
