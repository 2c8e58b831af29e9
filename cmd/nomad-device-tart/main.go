// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command nomad-device-tart is the Nomad device plugin that reports a
// Mac's Tart VM slots (device "tart/vm"), so the scheduler never places
// more VM tasks on a host than it has slots. `--version` prints the version.
package main

import (
	"github.com/tartnomad/nomad-driver-tart/device"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

func main() { sdk.ServeDevice(device.BinaryName, device.NewPlugin) }
