// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

// Names the external tests (package sdk_test) need but no user of the
// package does.
var (
	TaskConfigToProto = taskConfigToProto
	DevicePluginSet   = devicePluginSet
)

const DevicePluginKey = devicePluginKey
