// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// Defaults of the plugin config, used both in the schema (so Nomad fills
// them in) and in Validate (for an empty config).
const (
	defaultTartPath = "tart"
	defaultMaxVMs   = 2
)

// PluginConfig is the agent's plugin "nomad-driver-tart" { config { } }.
type PluginConfig struct {
	// TartPath is the tart binary: a name looked up on PATH or a path.
	TartPath string `codec:"tart_path"`
	// MaxVMs is how many VMs may run at once (macOS allows two).
	MaxVMs int `codec:"max_vms"`
}

// Validate applies defaults, then checks every field.
func (c *PluginConfig) Validate() error {
	if c.TartPath == "" {
		c.TartPath = defaultTartPath
	}
	if c.MaxVMs == 0 {
		c.MaxVMs = defaultMaxVMs
	}
	var errs []error
	if c.MaxVMs < 1 {
		errs = append(errs, fmt.Errorf("max_vms: must be at least 1, got %d", c.MaxVMs))
	}
	return errors.Join(errs...)
}

// TaskConfig is a task's config { } block.
type TaskConfig struct {
	// Image is the Tart VM image (local name or OCI reference).
	Image string `codec:"image"`
	// Command is run inside the VM; empty means the image's default.
	Command string `codec:"command"`
	// Args are the command's arguments.
	Args []string `codec:"args"`
}

// Validate checks every field.
func (c *TaskConfig) Validate() error {
	if c.Image == "" {
		return errors.New("image: must not be empty")
	}
	return nil
}

// pluginConfigSpec is the schema of PluginConfig.
var pluginConfigSpec = &hclspec.Spec{Kind: hclspec.KindObject, Attributes: map[string]*hclspec.Spec{
	"tart_path": withDefault(attr("tart_path", "string", false), strconv.Quote(defaultTartPath)),
	"max_vms":   withDefault(attr("max_vms", "number", false), strconv.Itoa(defaultMaxVMs)),
}}

// taskConfigSpec is the schema of TaskConfig. image is required: Nomad
// rejects an empty task config block anyway ("Root value must be object").
var taskConfigSpec = &hclspec.Spec{Kind: hclspec.KindObject, Attributes: map[string]*hclspec.Spec{
	"image":   attr("image", "string", true),
	"command": attr("command", "string", false),
	"args":    attr("args", "list(string)", false),
}}

func attr(name, typ string, required bool) *hclspec.Spec {
	return &hclspec.Spec{Kind: hclspec.KindAttr, Name: name, Type: typ, Required: required}
}

// withDefault wraps primary in a default spec whose literal is expr (HCL
// expression source, so strings are quoted).
func withDefault(primary *hclspec.Spec, expr string) *hclspec.Spec {
	return &hclspec.Spec{
		Kind:    hclspec.KindDefault,
		Primary: primary,
		Default: &hclspec.Spec{Kind: hclspec.KindLiteral, Value: expr},
	}
}

// ConfigSchema is the schema of the agent's plugin config block.
func (d *Driver) ConfigSchema() *hclspec.Spec { return pluginConfigSpec }

// TaskConfigSchema is the schema of a task's config block.
func (d *Driver) TaskConfigSchema() *hclspec.Spec { return taskConfigSpec }
