// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/shoenig/test/must"
	"github.com/zclconf/go-cty/cty"

	"github.com/tartnomad/nomad-driver-tart/driver"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

const spdxHeader = "# Copyright (c) The nomad-driver-tart Authors\n# SPDX-License-Identifier: MPL-2.0\n"

// TestExamples_tart parses every HCL file of the tart examples and checks
// what the driver relies on: the agent's plugin block decodes and validates
// with the plugin schema; every tart task's config block is accepted by the
// task schema (as Nomad's client encodes it) and validates; the runner job
// is parameterized with a required payload that reaches stdin_file.
func TestExamples_tart(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(testutil.RepoRoot(t), "examples", "tart-*", "*.hcl"))
	must.NoError(t, err)
	must.Greater(t, 4, len(files))
	d := driver.New(nil)
	tasks := 0
	for _, path := range files {
		t.Run(filepath.Base(filepath.Dir(path))+"/"+filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			must.NoError(t, err)
			must.StrHasPrefix(t, spdxHeader, string(src))
			must.Eq(t, string(hclwrite.Format(src)), string(src), must.Sprint("not hclfmt-formatted"))
			f, diags := hclparse.NewParser().ParseHCL(src, path)
			must.False(t, diags.HasErrors(), must.Sprint(diags.Error()))
			body := f.Body.(*hclsyntax.Body)
			if filepath.Base(path) == "agent.hcl" {
				checkAgent(t, d, src, body)
				return
			}
			for _, job := range blocks(body, "job") {
				for _, task := range taskBlocks(job.Body) {
					tasks++
					checkTask(t, d, src, job, task)
				}
			}
		})
	}
	must.Greater(t, 2, tasks)
}

func checkAgent(t *testing.T, d *driver.Driver, src []byte, body *hclsyntax.Body) {
	plugins := blocks(body, "plugin")
	must.Len(t, 1, plugins)
	must.Eq(t, []string{driver.BinaryName}, plugins[0].Labels)
	cfgs := blocks(plugins[0].Body, "config")
	must.Len(t, 1, cfgs)
	raw, err := hclspec.EncodePluginConfig(d.ConfigSchema(), inner(src, cfgs[0]))
	must.NoError(t, err)
	var pc driver.PluginConfig
	must.NoError(t, hclspec.Decode(d.ConfigSchema(), raw, &pc))
	must.NoError(t, pc.Validate())
	must.Positive(t, pc.MaxVMs)
}

func checkTask(t *testing.T, d *driver.Driver, src []byte, job, task *hclsyntax.Block) {
	must.Eq(t, "tart", attrString(t, task.Body, "driver"))
	cfgs := blocks(task.Body, "config")
	must.Len(t, 1, cfgs)
	raw, err := hclspec.EncodeTaskConfig(d.TaskConfigSchema(), inner(src, cfgs[0]), &hclspec.TaskEnv{
		Env: map[string]string{"NOMAD_ALLOC_ID": "a", "NOMAD_JOB_NAME": "j"}})
	must.NoError(t, err)
	var tc driver.TaskConfig
	must.NoError(t, hclspec.Decode(d.TaskConfigSchema(), raw, &tc))
	must.NoError(t, tc.Validate())
	params := blocks(job.Body, "parameterized")
	if len(params) == 0 {
		return
	}
	// A dispatched runner: the payload is required and reaches the guest's
	// stdin through stdin_file, never through args or env.
	must.Eq(t, "required", attrString(t, params[0].Body, "payload"))
	must.NotNil(t, params[0].Body.Attributes["meta_required"])
	must.NotEq(t, "", attrString(t, job.Body, "namespace"))
	dp := blocks(task.Body, "dispatch_payload")
	must.Len(t, 1, dp)
	must.Eq(t, "local/"+attrString(t, dp[0].Body, "file"), tc.StdinFile)
	must.StrNotContains(t, strings.Join(tc.Args, " "), "NOMAD_META")
}

func blocks(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

func taskBlocks(job *hclsyntax.Body) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, g := range blocks(job, "group") {
		out = append(out, blocks(g.Body, "task")...)
	}
	return out
}

// inner is the source text between a block's braces.
func inner(src []byte, b *hclsyntax.Block) string {
	return string(src[b.OpenBraceRange.End.Byte:b.CloseBraceRange.Start.Byte])
}

func attrString(t *testing.T, body *hclsyntax.Body, name string) string {
	t.Helper()
	a, ok := body.Attributes[name]
	must.True(t, ok, must.Sprintf("attribute %s missing", name))
	v, diags := a.Expr.Value(&hcl.EvalContext{})
	must.False(t, diags.HasErrors(), must.Sprint(diags.Error()))
	must.Eq(t, cty.String, v.Type())
	return v.AsString()
}

// TestPluginConfigSchema_poolBlockIsUnlabeled pins the pool syntax the
// README and examples use: pool { name = "..." }. A labeled pool "x" { }
// (the shape of Nomad's own plugin block) is an error, not a silent no-op.
func TestPluginConfigSchema_poolBlockIsUnlabeled(t *testing.T) {
	t.Parallel()
	d := driver.New(nil)
	raw, err := hclspec.EncodePluginConfig(d.ConfigSchema(), `pool {
  name  = "macos"
  image = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
}`)
	must.NoError(t, err)
	var pc driver.PluginConfig
	must.NoError(t, hclspec.Decode(d.ConfigSchema(), raw, &pc))
	must.Eq(t, []driver.PoolConfig{{Name: "macos", Image: "ghcr.io/cirruslabs/macos-sequoia-base:latest", Size: 1, Mode: "boot"}}, pc.Pools)

	_, err = hclspec.EncodePluginConfig(d.ConfigSchema(), `pool "macos" {
  image = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
}`)
	must.ErrorContains(t, err, `The argument "name" is required`)
}
