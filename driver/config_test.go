// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"testing"

	"github.com/shoenig/test/must"
	"github.com/zclconf/go-cty/cty"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

func TestPluginConfig_Validate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      PluginConfig
		want    PluginConfig
		wantErr string
	}{
		{name: "defaults", want: PluginConfig{TartPath: "tart", MaxVMs: 2}},
		{name: "explicit", in: PluginConfig{TartPath: "/opt/tart", MaxVMs: 1}, want: PluginConfig{TartPath: "/opt/tart", MaxVMs: 1}},
		{name: "negative max_vms", in: PluginConfig{MaxVMs: -1}, wantErr: "max_vms: must be at least 1, got -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.in
			err := c.Validate()
			if tc.wantErr != "" {
				must.ErrorContains(t, err, tc.wantErr)
				return
			}
			must.NoError(t, err)
			must.Eq(t, tc.want, c)
		})
	}
}

func TestTaskConfig_Validate(t *testing.T) {
	t.Parallel()
	must.ErrorContains(t, (&TaskConfig{}).Validate(), "image: must not be empty")
	must.NoError(t, (&TaskConfig{Image: "ghcr.io/cirruslabs/macos-sequoia-base:latest"}).Validate())
}

func TestDriver_schemas_convert(t *testing.T) {
	t.Parallel()
	d := New(nil)
	plugin, err := sdk.SpecToProto(d.ConfigSchema())
	must.NoError(t, err)
	attrs := plugin.GetObject().GetAttributes()
	must.Eq(t, `"tart"`, attrs["tart_path"].GetDefault().GetDefault().GetLiteral().GetValue())
	must.Eq(t, "2", attrs["max_vms"].GetDefault().GetDefault().GetLiteral().GetValue())

	task, err := sdk.SpecToProto(d.TaskConfigSchema())
	must.NoError(t, err)
	must.True(t, task.GetObject().GetAttributes()["image"].GetAttr().GetRequired())
	must.Eq(t, "list(string)", task.GetObject().GetAttributes()["args"].GetAttr().GetType())
}

func TestDriver_SetConfig_emptyUsesDefaults(t *testing.T) {
	t.Parallel()
	d := New(nil)
	must.NoError(t, d.SetConfig(&sdk.PluginConfig{}))
	must.NoError(t, d.SetConfig(&sdk.PluginConfig{})) // idempotent
	must.Eq(t, PluginConfig{TartPath: "tart", MaxVMs: 2}, d.pluginConfig())
}

// pluginConfigBytes encodes a plugin config the way Nomad does: go-cty
// msgpack of the decoded object with its own type.
func pluginConfigBytes(t *testing.T, tartPath string, maxVMs int64) []byte {
	t.Helper()
	v := cty.ObjectVal(map[string]cty.Value{
		"tart_path": cty.StringVal(tartPath),
		"max_vms":   cty.NumberIntVal(maxVMs),
	})
	b, err := ctymsgpack.Marshal(v, v.Type())
	must.NoError(t, err)
	return b
}

func TestDriver_SetConfig_msgpack(t *testing.T) {
	t.Parallel()
	d := New(nil)
	must.NoError(t, d.SetConfig(&sdk.PluginConfig{RawConfig: pluginConfigBytes(t, "/opt/tart/bin/tart", 1)}))
	must.Eq(t, PluginConfig{TartPath: "/opt/tart/bin/tart", MaxVMs: 1}, d.pluginConfig())

	err := d.SetConfig(&sdk.PluginConfig{RawConfig: pluginConfigBytes(t, "tart", -2)})
	must.ErrorContains(t, err, "max_vms: must be at least 1, got -2")
	must.Eq(t, PluginConfig{TartPath: "/opt/tart/bin/tart", MaxVMs: 1}, d.pluginConfig()) // unchanged
}
