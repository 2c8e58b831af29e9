// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testdriver

import (
	"errors"
	"fmt"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// Name is the driver's name (PluginInfo, attributes).
const Name = "testdriver"

// pluginSchema: plugin "testdriver" { config { greeting = "..." } }.
var pluginSchema = hclspec.Object(map[string]*hclspec.Spec{
	"greeting": hclspec.Default(hclspec.Attr("greeting", "string", false), hclspec.Literal(`"hello"`)),
})

// taskSchema: task config { command = "..." args = [...] }.
var taskSchema = hclspec.Object(map[string]*hclspec.Spec{
	"command": hclspec.Attr("command", "string", true),
	"args":    hclspec.Attr("args", "list(string)", false),
})

type pluginConfig struct {
	Greeting string
}

type taskConfig struct {
	Command string   `json:"command"`
	Args    []string `json:"args"`
}

// decodeObject decodes Nomad's msgpack config into a cty object, with the
// type implied by the bytes (works for every schema).
func decodeObject(raw []byte) (cty.Value, error) {
	ty, err := ctymsgpack.ImpliedType(raw)
	if err != nil {
		return cty.NilVal, fmt.Errorf("read msgpack type: %w", err)
	}
	v, err := ctymsgpack.Unmarshal(raw, ty)
	if err != nil {
		return cty.NilVal, fmt.Errorf("decode msgpack: %w", err)
	}
	if !v.Type().IsObjectType() {
		return cty.NilVal, fmt.Errorf("config is %s, want an object", v.Type().FriendlyName())
	}
	return v, nil
}

func stringAttr(obj cty.Value, name string) (string, error) {
	if !obj.Type().HasAttribute(name) {
		return "", nil
	}
	v := obj.GetAttr(name)
	if v.IsNull() {
		return "", nil
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return s.AsString(), nil
}

func decodePluginConfig(raw []byte) (pluginConfig, error) {
	cfg := pluginConfig{Greeting: "hello"}
	if len(raw) == 0 {
		return cfg, nil
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return cfg, err
	}
	g, err := stringAttr(obj, "greeting")
	if err != nil {
		return cfg, err
	}
	if g != "" {
		cfg.Greeting = g
	}
	return cfg, nil
}

func decodeTaskConfig(raw []byte) (taskConfig, error) {
	var cfg taskConfig
	obj, err := decodeObject(raw)
	if err != nil {
		return cfg, err
	}
	if cfg.Command, err = stringAttr(obj, "command"); err != nil {
		return cfg, err
	}
	if cfg.Command == "" {
		return cfg, errors.New("command: required")
	}
	if obj.Type().HasAttribute("args") {
		args := obj.GetAttr("args")
		if !args.IsNull() {
			list, err := convert.Convert(args, cty.List(cty.String))
			if err != nil {
				return cfg, fmt.Errorf("args: %w", err)
			}
			for _, a := range list.AsValueSlice() {
				cfg.Args = append(cfg.Args, a.AsString())
			}
		}
	}
	return cfg, nil
}
