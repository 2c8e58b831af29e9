// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"testing"
	"time"

	"github.com/shoenig/test/must"
	"github.com/zclconf/go-cty/cty"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"

	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

func TestPluginConfig_Validate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      PluginConfig
		want    PluginConfig
		wantErr string
	}{
		{name: "defaults", want: defaultPluginConfig()},
		{name: "explicit", in: PluginConfig{TartPath: "/opt/tart", MaxVMs: 1, GCInterval: time.Minute},
			want: func() PluginConfig {
				c := defaultPluginConfig()
				c.TartPath, c.MaxVMs, c.GCInterval = "/opt/tart", 1, time.Minute
				return c
			}()},
		{name: "grace below boot timeout", in: PluginConfig{GCGracePeriod: time.Minute},
			wantErr: `gc_grace_period = "1m0s" must be at least boot_timeout (5m0s), or booting VMs could be collected`},
		{name: "bad pools", in: PluginConfig{Pools: []PoolConfig{{Name: "a b"}, {Name: "x", Image: "i", Size: -1}, {Name: "x", Image: "i"}}},
			wantErr: `pool[0].name = "a b" is not a valid pool name: use at most 40 letters, digits, '-', '_' or '.'; pool[0].image must not be empty; ` +
				`pool[1].size = -1 must not be negative; pool[2].name = "x" is a duplicate: pool names must be unique`},
		{name: "negative max_vms", in: PluginConfig{MaxVMs: -1}, wantErr: "max_vms = -1 must be at least 1"},
		{name: "negative durations", in: PluginConfig{GCInterval: -time.Second, VMStopTimeout: -time.Second},
			wantErr: `gc_interval = "-1s" must not be negative; vm_stop_timeout = "-1s" must not be negative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.in
			err := c.Validate()
			if tc.wantErr != "" {
				must.EqError(t, err, tc.wantErr)
				return
			}
			must.NoError(t, err)
			must.Eq(t, tc.want, c)
		})
	}
}

func defaultPluginConfig() PluginConfig {
	return PluginConfig{TartPath: "tart", MaxVMs: 2, GCInterval: 5 * time.Minute, GCGracePeriod: 15 * time.Minute,
		SlotWaitTimeout: time.Minute, BootTimeout: 5 * time.Minute, VMStopTimeout: 10 * time.Second, AgentPollInterval: time.Second}
}

func TestTaskConfig_Validate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      TaskConfig
		wantErr string
	}{
		{name: "ok", in: TaskConfig{Image: "ghcr.io/cirruslabs/macos-sequoia-base:latest", Command: "/bin/echo"}},
		{name: "no image", in: TaskConfig{Command: "x"}, wantErr: "image must not be empty"},
		{name: "no command", in: TaskConfig{Image: "i"}, wantErr: "command must not be empty (the program run in the guest)"},
		{name: "pull policy", in: TaskConfig{Image: "i", Command: "x", PullPolicy: "sometimes"},
			wantErr: `pull_policy = "sometimes" is not one of "if_not_present", "always", "never"`},
		{name: "pull timeout", in: TaskConfig{Image: "i", Command: "x", PullTimeout: -time.Minute}, wantErr: `pull_timeout = "-1m0s" must not be negative`},
		{name: "stdin outside", in: TaskConfig{Image: "i", Command: "x", StdinFile: "../../etc/passwd"},
			wantErr: `stdin_file = "../../etc/passwd" leaves the task directory`},
		{name: "stdin absolute", in: TaskConfig{Image: "i", Command: "x", StdinFile: "/etc/passwd"},
			wantErr: `stdin_file = "/etc/passwd" must be relative to the task directory`},
		{name: "network mode", in: TaskConfig{Image: "i", Command: "x", NetworkMode: "vpn"},
			wantErr: `network_mode = "vpn" is not one of "nat", "softnet", "bridged", "host"`},
		{name: "bridged without interface", in: TaskConfig{Image: "i", Command: "x", NetworkMode: "bridged"},
			wantErr: `bridged_interfaces must name at least one host interface (e.g. ["en0"]) when network_mode = "bridged"`},
		{name: "interfaces without bridged", in: TaskConfig{Image: "i", Command: "x", BridgedInterfaces: []string{"en0"}},
			wantErr: `bridged_interfaces need network_mode = "bridged", not "nat"`},
		{name: "softnet options without softnet", in: TaskConfig{Image: "i", Command: "x", NetworkMode: "host", SoftnetAllow: []string{"10.0.0.0/8"}},
			wantErr: `softnet_allow, softnet_block and softnet_expose need network_mode = "softnet", not "host"`},
		{name: "negative", in: TaskConfig{Image: "i", Command: "x", CPU: -1}, wantErr: "cpu = -1 must not be negative"},
		{name: "pool name", in: TaskConfig{Image: "i", Command: "x", Pool: "a b"},
			wantErr: `pool = "a b" is not a valid pool name: use at most 40 letters, digits, '-', '_' or '.'`},
		{name: "share name", in: TaskConfig{Image: "i", Command: "x", SharedDirs: []SharedDir{{HostPath: "local", Name: "a/b"}}},
			wantErr: `shared_dir[0].name = "a/b" must use only letters, digits, '.', '_' or '-'`},
		// Several problems stay on one line: Nomad shows them in a
		// one-line task event.
		{name: "several", in: TaskConfig{Image: "i", Command: "x", Memory: -1, PullPolicy: "sometimes"},
			wantErr: `memory = -1 must not be negative; pull_policy = "sometimes" is not one of "if_not_present", "always", "never"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.in
			err := c.Validate()
			if tc.wantErr != "" {
				must.EqError(t, err, tc.wantErr)
				return
			}
			must.NoError(t, err)
			must.Eq(t, "nat", c.NetworkMode)
			must.Eq(t, "if_not_present", c.PullPolicy)
		})
	}
}

func TestDriver_schemas_convert(t *testing.T) {
	t.Parallel()
	d := New(nil)
	plugin, err := wire.SpecToProto(d.ConfigSchema())
	must.NoError(t, err)
	attrs := plugin.GetObject().GetAttributes()
	must.Eq(t, `"tart"`, attrs["tart_path"].GetDefault().GetDefault().GetLiteral().GetValue())
	must.Eq(t, "2", attrs["max_vms"].GetDefault().GetDefault().GetLiteral().GetValue())

	task, err := wire.SpecToProto(d.TaskConfigSchema())
	must.NoError(t, err)
	must.True(t, task.GetObject().GetAttributes()["image"].GetAttr().GetRequired())
	must.Eq(t, "list(string)", task.GetObject().GetAttributes()["args"].GetAttr().GetType())
}

func TestDriver_SetConfig_emptyUsesDefaults(t *testing.T) {
	t.Parallel()
	d := New(nil)
	must.NoError(t, d.SetConfig(&sdk.PluginConfig{}))
	must.NoError(t, d.SetConfig(&sdk.PluginConfig{})) // idempotent
	must.Eq(t, defaultPluginConfig(), d.pluginConfig())
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
	want := defaultPluginConfig()
	want.TartPath, want.MaxVMs = "/opt/tart/bin/tart", 1
	must.Eq(t, want, d.pluginConfig())

	err := d.SetConfig(&sdk.PluginConfig{RawConfig: pluginConfigBytes(t, "tart", -2)})
	must.EqError(t, err, "invalid plugin config: max_vms = -2 must be at least 1")
	must.Eq(t, want, d.pluginConfig()) // unchanged
}

func TestNamedPoolFits_unknownPool(t *testing.T) {
	t.Parallel()
	spec := tart.VMSpec{Pool: "macos-runner", Image: "i"}
	err := namedPoolFits(PluginConfig{}, spec)
	must.EqError(t, err, `pool "macos-runner" is not configured on this client (pools: none)`)
	err = namedPoolFits(PluginConfig{Pools: []PoolConfig{{Name: "warm", Image: "i"}, {Name: "big", Image: "i"}}}, spec)
	must.EqError(t, err, `pool "macos-runner" is not configured on this client (pools: warm, big)`)
	spec.Pool = "warm"
	must.NoError(t, namedPoolFits(PluginConfig{Pools: []PoolConfig{{Name: "warm", Image: "i"}}}, spec))
}
