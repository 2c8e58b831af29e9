// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"math"
	"testing"

	"github.com/shoenig/test/must"
)

func TestConfig_Validate_defaults(t *testing.T) {
	t.Parallel()
	c := Config{ScaleSet: "linux", InstanceID: "host-a", SharedVolume: "toolcache"}
	must.NoError(t, c.Validate())
	must.EqOp(t, DefaultImage, c.Image)
	must.EqOp(t, PullMissing, c.PullPolicy)
	must.Eq(t, []string{DefaultRunnerCommand}, c.Command)
	must.EqOp(t, DefaultSharedVolumePath, c.SharedVolumePath)
	must.EqOp(t, DeliveryFile, c.JITConfigDelivery)
	must.EqOp(t, DefaultJITConfigPath, c.JITConfigPath)
	must.EqOp(t, DefaultShell, c.Shell)
	must.EqOp(t, DefaultReconcileInterval, c.ReconcileInterval)
	must.EqOp(t, "", c.NetworkMode)

	// The instance defaults to the host name.
	c = Config{ScaleSet: "linux"}
	must.NoError(t, c.Validate())
	must.NotEq(t, "", c.InstanceID)
}

func TestConfig_Validate_errors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{name: "scale_set", mutate: func(c *Config) { c.ScaleSet = " " }, want: "scale_set: must not be empty"},
		{name: "image", mutate: func(c *Config) { c.Image = "a b" }, want: `image: "a b"`},
		{name: "pull_policy", mutate: func(c *Config) { c.PullPolicy = "sometimes" }, want: `pull_policy: "sometimes"`},
		{name: "command", mutate: func(c *Config) { c.Command = []string{""} }, want: "command:"},
		{name: "cpus_negative", mutate: func(c *Config) { c.CPUs = -1 }, want: "cpus:"},
		{name: "cpus_nan", mutate: func(c *Config) { c.CPUs = math.NaN() }, want: "cpus:"},
		{name: "memory_small", mutate: func(c *Config) { c.MemoryBytes = 1024 }, want: "memory: 1024 bytes"},
		{name: "network_mode", mutate: func(c *Config) { c.NetworkMode = "ho st" }, want: "network_mode:"},
		{name: "shared_volume", mutate: func(c *Config) { c.SharedVolume = "bad/name" }, want: "shared_volume:"},
		{name: "shared_volume_path", mutate: func(c *Config) { c.SharedVolume = "v"; c.SharedVolumePath = "rel" }, want: "shared_volume_path:"},
		{name: "env_jit", mutate: func(c *Config) { c.Env = map[string]string{JITConfigEnv: "x"} }, want: "env: " + JITConfigEnv},
		{name: "env_name", mutate: func(c *Config) { c.Env = map[string]string{"A=B": "x"} }, want: `env: "A=B"`},
		{name: "labels_reserved", mutate: func(c *Config) { c.Labels = map[string]string{LabelRunner: "x"} }, want: "container_labels:"},
		{name: "delivery", mutate: func(c *Config) { c.JITConfigDelivery = "argv" }, want: `jit_config_delivery: "argv"`},
		{name: "jit_path_relative", mutate: func(c *Config) { c.JITConfigPath = "jit" }, want: "jit_config_path:"},
		{name: "jit_path_quote", mutate: func(c *Config) { c.JITConfigPath = "/a'b" }, want: "jit_config_path:"},
		{name: "shell", mutate: func(c *Config) { c.Shell = "sh" }, want: "shell:"},
		{name: "reconcile_interval", mutate: func(c *Config) { c.ReconcileInterval = -1 }, want: "reconcile_interval:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Config{ScaleSet: "linux", InstanceID: "host-a"}
			tc.mutate(&c)
			err := c.Validate()
			must.Error(t, err)
			must.StrContains(t, err.Error(), tc.want)
		})
	}
}

func TestConfig_Validate_joinsAll(t *testing.T) {
	t.Parallel()
	c := Config{ScaleSet: "", InstanceID: "h", PullPolicy: "x", CPUs: -2}
	err := c.Validate()
	must.Error(t, err)
	for _, f := range []string{"scale_set:", "pull_policy:", "cpus:"} {
		must.StrContains(t, err.Error(), f)
	}
}
