// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"fmt"
	"runtime"

	hclspecpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/hclspec"
	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// encodePluginConfig turns the text of an agent plugin config block into
// SetConfigRequest.msgpack_config, using the schema the plugin sent over
// gRPC (nil: the plugin accepts no config).
func encodePluginConfig(spec *hclspecpb.Spec, body string) ([]byte, error) {
	native, err := wire.SpecFromProto(spec)
	if err != nil {
		return nil, fmt.Errorf("convert ConfigSchema received over gRPC: %w", err)
	}
	return hclspec.EncodePluginConfig(native, body)
}

// encodeTaskConfig turns the text of a task config block into
// TaskConfig.msgpack_driver_config, interpolating the task's variables as
// the client does. Errors are *hclspec.ConfigError where Nomad would refuse
// the config.
func encodeTaskConfig(spec *hclspecpb.Spec, body string, env *hclspec.TaskEnv) ([]byte, error) {
	native, err := wire.SpecFromProto(spec)
	if err != nil {
		return nil, fmt.Errorf("convert TaskConfigSchema received over gRPC: %w", err)
	}
	return hclspec.EncodeTaskConfig(native, body, env)
}

// nodeVariables are the ${node.*} and ${attr.*} values of the harness's
// fake node.
func (h *Harness) nodeVariables() map[string]string {
	return map[string]string{
		"node.unique.id":       h.nodeID,
		"node.unique.name":     h.nodeName,
		"node.datacenter":      "dc1",
		"node.region":          "global",
		"node.class":           "",
		"node.pool":            "default",
		"attr.kernel.name":     runtime.GOOS,
		"attr.cpu.arch":        runtime.GOARCH,
		"attr.unique.hostname": h.nodeName,
	}
}
