// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"context"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// DevicePlugin is the Go-native contract of a Nomad device plugin. Nomad's
// client keeps one long-lived process per device plugin and calls it
// concurrently (fingerprint and stats streams, Reserve per task).
type DevicePlugin interface {
	// PluginInfo names the plugin. Name should equal the binary's file name
	// and the agent's plugin block label.
	PluginInfo() PluginInfo
	// ConfigSchema is the schema of the agent's plugin "x" { config {} }
	// block; nil accepts no config.
	ConfigSchema() *hclspec.Spec
	// SetConfig receives the plugin config; it may arrive several times
	// with the same bytes and must be idempotent.
	SetConfig(cfg *PluginConfig) error
	// Fingerprint streams the complete, current set of device groups: the
	// first value at once, then a new one on every change, until ctx ends.
	// It must never give up: a problem is reported as unhealthy devices
	// (Nomad's client drops the plugin's devices for good when the stream
	// ends or carries an error, so the adapter never does either).
	Fingerprint(ctx context.Context) (<-chan *DeviceFingerprint, error)
	// Reserve answers for the device IDs the scheduler allocated to a task,
	// in the task's prestart. An error fails the task's start.
	Reserve(ctx context.Context, deviceIDs []string) (*DeviceReservation, error)
	// Stats streams instance statistics every interval until ctx ends.
	Stats(ctx context.Context, interval time.Duration) (<-chan *DeviceStatsBatch, error)
}

// DeviceFingerprint is one value of the device fingerprint stream: every
// device group the plugin has (not a change set).
type DeviceFingerprint struct {
	Groups []*DeviceGroup
}

// DeviceGroup is a set of identical devices. A job asks for it as
// "<vendor>/<type>/<name>", "<vendor>/<type>" or "<type>". Vendor, Type and
// Name must be non-empty.
type DeviceGroup struct {
	Vendor, Type, Name string
	Devices            []*Device
	// Attributes are the group's attributes (${device.attr.<key>} in job
	// constraints). Values are string, bool, integers, floats or Attr (a
	// value with a unit).
	Attributes map[string]any
}

// Device is one instance of a group; only healthy instances are scheduled.
type Device struct {
	// ID must be non-empty and unique in its group.
	ID                string
	Healthy           bool
	HealthDescription string
	// PCIBusID is the hardware locality; empty when none.
	PCIBusID string
}

// Attr is an attribute value with a unit Nomad knows (e.g. "MiB", "MHz"),
// so constraints can compare it with units ("16 GiB").
type Attr struct {
	Value any // string, bool, integer or float
	Unit  string
}

// DeviceReservation is what a task gets for its reserved devices.
type DeviceReservation struct {
	// Envs are added to the task's environment (the driver sees them in
	// TaskConfig.Env and TaskConfig.DeviceEnv).
	Envs map[string]string
	// Mounts and DeviceNodes become the task's mounts and device nodes; a
	// driver that declares no mount support refuses tasks that have any.
	Mounts      []DeviceMount
	DeviceNodes []DeviceNode
}

// DeviceMount is a host path mounted into the task.
type DeviceMount struct {
	TaskPath, HostPath string
	ReadOnly           bool
}

// DeviceNode is a host device node exposed to the task.
type DeviceNode struct {
	TaskPath, HostPath string
	// Permissions are cgroup permissions, e.g. "rwm".
	Permissions string
}

// DeviceStatsBatch is one value of the stats stream: per group, per
// instance.
type DeviceStatsBatch struct {
	Groups []*DeviceGroupStats
}

// DeviceGroupStats are the statistics of one group's instances.
type DeviceGroupStats struct {
	Vendor, Type, Name string
	// Instances is keyed by device ID.
	Instances map[string]*DeviceStats
}

// DeviceStats are one instance's statistics: a summary value (shown by
// `nomad node status -verbose` and alloc resource usage) and named values.
// Timestamp zero means now.
type DeviceStats struct {
	Summary   StatValue
	Stats     map[string]StatValue
	Timestamp time.Time
}

// StatValue is one statistic. Set exactly one of the value kinds: a string,
// a bool, or a number (Int or Float, with an optional denominator for a
// fraction such as "1 of 2").
type StatValue struct {
	String *string
	Bool   *bool
	Int    *int64
	// IntOf is the denominator of Int (e.g. the total); nil for none.
	IntOf *int64
	Float *float64
	// FloatOf is the denominator of Float; nil for none.
	FloatOf *float64
	Unit    string
	Desc    string
}

// StringStat is a string statistic with a description.
func StringStat(v, desc string) StatValue { return StatValue{String: &v, Desc: desc} }

// IntStat is an integer statistic with a unit and a description.
func IntStat(v int64, unit, desc string) StatValue { return StatValue{Int: &v, Unit: unit, Desc: desc} }

// BoolStat is a bool statistic with a description.
func BoolStat(v bool, desc string) StatValue { return StatValue{Bool: &v, Desc: desc} }
