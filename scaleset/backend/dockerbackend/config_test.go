// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerbackend

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
)

func TestConfig_Validate_defaults(t *testing.T) {
	t.Parallel()
	var c Config
	must.NoError(t, c.Validate())
	must.EqOp(t, dockerexec.DefaultImage, c.Image)
	must.EqOp(t, "missing", c.PullPolicy)
	must.Eq(t, []string{dockerexec.DefaultRunnerCommand}, c.Command)
	must.EqOp(t, "file", c.JITConfigDelivery)
	must.EqOp(t, dockerexec.DefaultJITConfigPath, c.JITConfigPath)
	must.EqOp(t, dockerexec.DefaultShell, c.Shell)
	must.NotEq(t, "", c.InstanceID)
	must.EqOp(t, int64(0), c.MemoryBytes)
}

func TestConfig_Validate_decodedHCL(t *testing.T) {
	t.Parallel()
	src := `
image               = "registry.example/runner:2.330"
pull_policy         = "always"
network_mode        = "host"
cpus                = 2.5
memory              = "4g"
shared_volume       = "toolcache"
env                 = { RUNNER_TOOL_CACHE = "/opt/hostedtoolcache" }
container_labels    = { team = "ci" }
jit_config_delivery = "env"
instance_id         = "builder-1"
`
	f, diags := hclsyntax.ParseConfig([]byte(src), "docker.hcl", hcl.InitialPos)
	must.False(t, diags.HasErrors(), must.Sprint(diags.Error()))
	var c Config
	diags = gohcl.DecodeBody(f.Body, nil, &c)
	must.False(t, diags.HasErrors(), must.Sprint(diags.Error()))
	must.NoError(t, c.Validate())
	must.EqOp(t, int64(4<<30), c.MemoryBytes)
	must.EqOp(t, dockerexec.DefaultSharedVolumePath, c.SharedVolumePath)

	ec := c.executorConfig("linux")
	must.NoError(t, ec.Validate())
	must.EqOp(t, "registry.example/runner:2.330", ec.Image)
	must.EqOp(t, dockerexec.PullAlways, ec.PullPolicy)
	must.EqOp(t, "host", ec.NetworkMode)
	must.EqOp(t, 2.5, ec.CPUs)
	must.EqOp(t, dockerexec.DeliveryEnv, ec.JITConfigDelivery)
	must.EqOp(t, "ci", ec.Labels["team"])
	must.EqOp(t, "builder-1", ec.InstanceID)
	must.EqOp(t, "linux", ec.ScaleSet)
}

func TestConfig_Validate_errors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{name: "memory", cfg: Config{Memory: "lots"}, want: []string{`memory: "lots"`}},
		{name: "memory_tiny", cfg: Config{Memory: "1k"}, want: []string{"memory: 1024 bytes"}},
		{name: "pull_policy", cfg: Config{PullPolicy: "sometimes"}, want: []string{`pull_policy: "sometimes"`}},
		{name: "docker_host", cfg: Config{DockerHost: "/var/run/docker.sock"}, want: []string{"docker_host:"}},
		{name: "labels", cfg: Config{ContainerLabels: map[string]string{dockerexec.LabelRunner: "x"}}, want: []string{"container_labels:"}},
		{name: "several", cfg: Config{CPUs: -1, JITConfigDelivery: "argv"}, want: []string{"cpus:", "jit_config_delivery:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			must.Error(t, err)
			for _, w := range tc.want {
				must.StrContains(t, err.Error(), w)
			}
		})
	}
}
