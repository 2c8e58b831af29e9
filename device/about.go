// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package device

import (
	"strconv"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
	"github.com/tartnomad/nomad-driver-tart/version"
)

const (
	// BinaryName is the plugin binary's file name and the label of the
	// agent's plugin block.
	BinaryName = "nomad-device-tart"
	// PluginName is the name in PluginInfo. Nomad keys plugins by name and
	// type, so it does not clash with the driver's "tart".
	PluginName = "tart"

	// Vendor is the first part of the device ID "tart/vm/slot" (Vendor,
	// Type, Name). A job asks for a slot with device "tart/vm"
	// (vendor/type): the vendor says whose slots these are (a GPU plugin's
	// "nvidia/gpu" reads the same way).
	Vendor = "tart"
	// Type is what a slot holds.
	Type = "vm"
	// Name is what one instance is.
	Name = "slot"

	// EnvSlotIDs is the environment variable Reserve sets: the reserved
	// instance IDs, comma-separated. The driver reads it to know the task
	// holds a slot reservation.
	EnvSlotIDs = "TART_SLOT_IDS"
	// SlotIDPrefix prefixes an instance ID; the rest is the slot index.
	SlotIDPrefix = "slot-"
)

// SlotID is the instance ID of slot index i.
func SlotID(i int) string { return SlotIDPrefix + strconv.Itoa(i) }

// PluginInfo names the plugin; the version comes from the version package.
func (p *Plugin) PluginInfo() sdk.PluginInfo {
	return sdk.PluginInfo{Name: PluginName, Version: version.String()}
}

// ConfigSchema is the schema of the agent's plugin block.
func (p *Plugin) ConfigSchema() *hclspec.Spec { return configSpec }
