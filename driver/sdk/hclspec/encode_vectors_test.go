// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"encoding/hex"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/shoenig/test/must"
	"github.com/zclconf/go-cty/cty"
)

// vectorTaskEnv builds the TaskEnv a vector's task case had: the file's
// common task environment plus the job file's own task env block and
// variable defaults.
func vectorTaskEnvFor(t *testing.T, v *vectorFile, c *vectorCase) *TaskEnv {
	t.Helper()
	env := &TaskEnv{Env: maps.Clone(v.TaskEnvironment.Env), Node: v.TaskEnvironment.Node}
	file, diags := hclsyntax.ParseConfig([]byte(c.HCLInput), "job.nomad.hcl", hcl.InitialPos)
	must.False(t, diags.HasErrors(), must.Sprint(diags))
	var walk func(b *hclsyntax.Body, path string)
	walk = func(b *hclsyntax.Body, path string) {
		for _, blk := range b.Blocks {
			switch p := path + "/" + blk.Type; p {
			case "/variable":
				def, ok := blk.Body.Attributes["default"]
				if ok {
					val, diags := def.Expr.Value(nil)
					must.False(t, diags.HasErrors())
					if env.JobVariables == nil {
						env.JobVariables = map[string]cty.Value{}
					}
					env.JobVariables[blk.Labels[0]] = val
				}
			case "/job/group/task/env":
				for name, attr := range blk.Body.Attributes {
					val, diags := attr.Expr.Value(nil)
					must.False(t, diags.HasErrors())
					env.Env[name] = val.AsString()
				}
			default:
				walk(blk.Body, p)
			}
		}
	}
	walk(file.Body.(*hclsyntax.Body), "")
	return env
}

func encodeVector(t *testing.T, v *vectorFile, c *vectorCase) ([]byte, error) {
	t.Helper()
	spec := specFromNeutral(t, c.Schema)
	body := ""
	if c.ConfigBody != nil {
		body = *c.ConfigBody
	}
	switch c.Path {
	case "plugin_config":
		return EncodePluginConfig(spec, body)
	case "task_config":
		return EncodeTaskConfig(spec, body, vectorTaskEnvFor(t, v, c))
	default:
		t.Fatalf("unknown path %q", c.Path)
		return nil, nil
	}
}

// TestVectors_Encode checks that the encoders reproduce every captured blob
// byte for byte.
func TestVectors_Encode(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	n := 0
	for _, c := range v.Cases {
		if c.Result != "ok" {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			got, err := encodeVector(t, v, &c)
			must.NoError(t, err)
			must.Eq(t, c.MsgpackHex, hex.EncodeToString(got))
		})
	}
	must.Greater(t, 60, n)
}

// TestVectors_EncodeRejects checks that every input Nomad refused is refused
// at the same stage, with Nomad's diagnostics where they are deterministic.
func TestVectors_EncodeRejects(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	n := 0
	for _, c := range v.Cases {
		if c.Result != "error" {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			_, err := encodeVector(t, v, &c)
			must.Error(t, err)
			must.ErrorIs(t, err, ErrConfigRejected)
			var ce *ConfigError
			must.True(t, errors.As(err, &ce))
			must.Eq(t, c.Error.Stage, ce.Stage)
			switch {
			case c.Error.Stage == StageAgentConfigParse:
				must.Eq(t, strings.TrimPrefix(c.Error.Text, "Error loading agent.hcl: "), ce.Error())
			case c.Error.Nondeterministic:
				must.SliceContainsFunc(t, c.Error.DiagnosticsVariants, ce.Diagnostics,
					func(a []string, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") })
			default:
				must.Eq(t, c.Error.Diagnostics, ce.Diagnostics)
			}
		})
	}
	must.Greater(t, 50, n)
}
