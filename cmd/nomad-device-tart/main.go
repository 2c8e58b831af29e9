// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command nomad-device-tart is the Nomad device plugin that reports a
// Mac's Tart VM slots (device "tart/vm"), so the scheduler never places
// more VM tasks on a host than it has slots. `--version` prints the
// version, `--help` what it is.
package main

import (
	"os"

	"github.com/tartnomad/nomad-driver-tart/device"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/internal/plugincli"
)

const usage = `Usage: nomad-device-tart [--version | --help]

nomad-device-tart is a Nomad device plugin: it fingerprints a Mac's Tart VM
slots as the device "tart/vm", so jobs can ask for one (device "tart/vm" {})
and the scheduler never places more VM tasks on a host than it has slots.
Nomad's client agent starts it; it is not run by hand.

Install: copy this binary into the client agent's plugin_dir and configure
it with a plugin "nomad-device-tart" { config { ... } } block in the agent
configuration, then restart the agent.

Documentation: device/README.md in github.com/tartnomad/nomad-driver-tart
`

func main() {
	if plugincli.Help(os.Args[1:], os.Stdout, usage) {
		return
	}
	sdk.ServeDevice(device.BinaryName, device.NewPlugin)
}
