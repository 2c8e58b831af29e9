// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Command nomad-driver-tart is the Nomad task driver plugin for Tart VMs.
// Nomad's agent starts it from its plugin_dir; `--version` prints the
// version, `--help` what it is; `supervise <dir>` is the detached per-task
// supervisor the plugin starts itself (the same binary, as plugin_dir
// allows no helpers; see internal/supervisor).
package main

import (
	"os"

	"github.com/tartnomad/nomad-driver-tart/driver"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/internal/plugincli"
	"github.com/tartnomad/nomad-driver-tart/internal/supervisor"
)

const usage = `Usage: nomad-driver-tart [--version | --help]

nomad-driver-tart is a Nomad task driver plugin (driver = "tart"): it runs
each task as an ephemeral Tart VM on an Apple Silicon Mac, from a warm pool
of pre-booted VMs. Nomad's client agent starts it; it is not run by hand.

Install: copy this binary into the client agent's plugin_dir and configure
it with a plugin "nomad-driver-tart" { config { ... } } block in the agent
configuration, then restart the agent.

Documentation: driver/README.md in github.com/tartnomad/nomad-driver-tart
`

func main() {
	supervisor.MainIfInvoked()
	if plugincli.Help(os.Args[1:], os.Stdout, usage) {
		return
	}
	sdk.Serve(driver.BinaryName, driver.NewPlugin)
}
