// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tartbackend

import (
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/tart"
)

func TestConfig_Validate_defaults(t *testing.T) {
	t.Parallel()
	c := Config{Image: "ghcr.io/cirruslabs/macos-sequoia-base:latest"}
	must.NoError(t, c.Validate())
	must.Eq(t, "tart", c.TartPath)
	must.Eq(t, 2, c.MaxVMs)
	must.Eq(t, "nat", c.Network)
	must.Eq(t, DefaultRunnerCommand, c.RunnerCommand)
	must.Eq(t, 10*time.Minute, c.StartTimeoutDuration)
	must.Eq(t, 10*time.Second, c.StopTimeoutDuration)
	must.NotEq(t, "", c.MACSeed)
}

func TestConfig_Validate_errors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no image", Config{}, []string{"image: must be set"}},
		{"negatives", Config{Image: "i", PoolSize: -1, MaxVMs: -2, CPU: -1, Memory: -1, DiskSize: -1},
			[]string{"pool_size: must be >= 0", "max_vms: must be >= 1", "cpu: must be >= 0", "memory: must be >= 0", "disk_size: must be >= 0"}},
		{"pool larger than slots", Config{Image: "i", PoolSize: 3, MaxVMs: 2}, []string{"pool_size: 3 is more than max_vms 2"}},
		{"bad network", Config{Image: "i", Network: "wifi"}, []string{`network: mode "wifi"`}},
		{"bridged without interface", Config{Image: "i", Network: "bridged"}, []string{"network: mode bridged needs at least one bridged interface"}},
		{"durations", Config{Image: "i", StartTimeout: "soon", StopTimeout: "-1s"},
			[]string{`start_timeout: must be a positive duration like "30s", got "soon"`, `stop_timeout: must be a positive duration`}},
		{"empty program", Config{Image: "i", RunnerCommand: []string{""}}, []string{"runner_command: the program"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			for _, w := range tc.want {
				must.ErrorContains(t, err, w)
			}
		})
	}
}

func Test_poolNameFor(t *testing.T) {
	t.Parallel()
	must.Eq(t, "my-scale-set", poolNameFor("my-scale-set"))
	must.Eq(t, "org-repo-macos", poolNameFor("org/repo macos"))
	must.Eq(t, "scaleset", poolNameFor("///"))
	must.Eq(t, 40, len(poolNameFor("a123456789b123456789c123456789d123456789e123")))
}

func TestConfig_decodeHCL(t *testing.T) {
	t.Parallel()
	src := `
image              = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
tart_path          = "/opt/homebrew/bin/tart"
pool_size          = 1
max_vms            = 2
cpu                = 4
memory             = 8192
disk_size          = 80
network            = "softnet"
softnet_allow      = ["10.0.0.0/8"]
runner_command     = ["/bin/zsh", "-lc", "cd ~/actions-runner && ACTIONS_RUNNER_INPUT_JITCONFIG=\"$(cat)\" ./run.sh"]
start_timeout      = "15m"
stop_timeout       = "20s"
mac_seed           = "mac-mini-7"
`
	f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
	must.False(t, diags.HasErrors(), must.Sprint(diags))
	var c Config
	diags = gohcl.DecodeBody(f.Body, nil, &c)
	must.False(t, diags.HasErrors(), must.Sprint(diags))
	must.NoError(t, c.Validate())
	must.Eq(t, 1, c.PoolSize)
	must.Eq(t, 8192, c.Memory)
	must.Eq(t, []string{"10.0.0.0/8"}, c.SoftnetAllow)
	must.Eq(t, 15*time.Minute, c.StartTimeoutDuration)
	must.Eq(t, "/bin/zsh", c.RunnerCommand[0])
	spec := c.spec("p")
	must.Eq(t, tart.NetworkSoftnet, spec.Run.Network.Mode)
	must.Eq(t, 80, spec.DiskSizeGB)
}
