// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"

	hclspecpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/hclspec"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// encodePluginConfig turns the text of an agent plugin config block into
// SetConfigRequest.msgpack_config, using the schema the plugin sent. Plugin
// configs have no variables.
func encodePluginConfig(spec *hclspecpb.Spec, body string) ([]byte, error) {
	return encodeConfig(spec, body, nil, "plugin.hcl")
}

// encodeTaskConfig turns the text of a task config block into
// TaskConfig.msgpack_driver_config, interpolating the task's variables.
func encodeTaskConfig(spec *hclspecpb.Spec, body string, vars map[string]string) ([]byte, error) {
	if strings.TrimSpace(body) == "" {
		// The servers drop empty config maps; the client then fails.
		return nil, errors.New("Root value must be object: an empty task config block never reaches the driver")
	}
	return encodeConfig(spec, body, vars, "job.nomad.hcl")
}

// encodeConfig decodes body with the schema as Nomad's client would and
// encodes the value with its own type, as go-cty msgpack.
func encodeConfig(spec *hclspecpb.Spec, body string, vars map[string]string, filename string) ([]byte, error) {
	native, err := sdk.SpecFromProto(spec)
	if err != nil {
		return nil, fmt.Errorf("convert schema received over gRPC: %w", err)
	}
	dec, err := hclspec.ToHCLDec(native)
	if err != nil {
		return nil, fmt.Errorf("convert schema to hcldec: %w", err)
	}
	file, diags := hclsyntax.ParseConfig([]byte(body), filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	ctx := &hcl.EvalContext{Functions: hclspec.Functions()}
	if vars != nil {
		v := make(map[string]cty.Value, len(vars))
		for k, s := range vars {
			v[k] = cty.StringVal(s)
		}
		ctx.Variables = v
	}
	val, diags := hcldec.Decode(file.Body, dec, ctx)
	if diags.HasErrors() {
		return nil, diagError(diags)
	}
	raw, err := ctymsgpack.Marshal(val, val.Type())
	if err != nil {
		return nil, fmt.Errorf("encode config as msgpack: %w", err)
	}
	return raw, nil
}

// diagError formats diagnostics the way Nomad shows them ("summary: detail").
func diagError(diags hcl.Diagnostics) error {
	var msgs []string
	for _, d := range diags.Errs() {
		var hd *hcl.Diagnostic
		if errors.As(d, &hd) {
			msgs = append(msgs, fmt.Sprintf("%s: %s", hd.Summary, hd.Detail))
			continue
		}
		msgs = append(msgs, d.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}
