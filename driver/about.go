// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package driver is the Nomad task driver for Tart macOS VMs: the schemas,
// fingerprint and task RPCs of `driver = "tart"`, served to Nomad through
// driver/sdk. It must not import github.com/hashicorp/nomad.
//
// Each task runs its command in an ephemeral VM: claimed from a warm pool
// of booted VMs when one matches, else cloned and booted. The command runs
// through `tart exec` under a detached supervisor (this binary, started
// with the "supervise" sub-command), so tasks survive the plugin process
// and a new process re-attaches from the handle's driver state. The
// binary's sub-command is dispatched in cmd/nomad-driver-tart.
package driver

import (
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/version"
)

const (
	// pluginName is the driver name jobs use (driver = "tart") and the
	// prefix of the driver's node attributes.
	pluginName = "tart"
	// BinaryName is the plugin binary's file name, which is also the label
	// of the agent's plugin block.
	BinaryName = "nomad-driver-tart"
)

// PluginInfo names the driver; the version comes from the version package.
func (d *Driver) PluginInfo() sdk.PluginInfo {
	return sdk.PluginInfo{Name: pluginName, Version: version.String()}
}

// capabilities are constant: a VM has its own root filesystem and network
// stack, and host volumes cannot be mounted into it by the client.
var capabilities = sdk.Capabilities{
	SendSignals:       true,
	Exec:              true,
	FSIsolation:       sdk.FSIsolationImage,
	NetIsolationModes: []sdk.NetworkIsolationMode{sdk.NetIsolationHost},
	MountConfigs:      sdk.MountConfigSupportNone,
}

// Capabilities is called often by the client; it returns a copy of a
// constant.
func (d *Driver) Capabilities() *sdk.Capabilities {
	c := capabilities
	c.NetIsolationModes = append([]sdk.NetworkIsolationMode(nil), capabilities.NetIsolationModes...)
	return &c
}
