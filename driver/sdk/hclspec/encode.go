// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	hcl1 "github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	hcljson "github.com/hashicorp/hcl/v2/json"
	"github.com/zclconf/go-cty/cty"
	ctymsgpack "github.com/zclconf/go-cty/cty/msgpack"
)

// Stages at which Nomad refuses a configuration; ConfigError.Stage holds one.
// The first three are the golden vectors' names.
const (
	// StageAgentConfigParse: the agent configuration file (HCL 1) does not
	// parse; the agent does not start.
	StageAgentConfigParse = "agent_config_parse"
	// StagePluginConfigDecode: the plugin config does not fit the plugin's
	// ConfigSchema; the agent does not start.
	StagePluginConfigDecode = "plugin_config_decode"
	// StageTaskConfigDecode: the task config does not fit the driver's
	// TaskConfigSchema; the task fails with a "Failed Validation" event and
	// the driver is never called.
	StageTaskConfigDecode = "task_config_decode"
	// StageJobParse: the job file's config block does not parse or evaluate
	// (HCL 2 jobspec); `nomad job run` refuses the job.
	StageJobParse = "job_parse"
)

// ErrConfigRejected is wrapped by every ConfigError.
var ErrConfigRejected = errors.New("configuration rejected")

// ConfigError is returned by the encoders where Nomad would refuse the
// configuration instead of sending it to the plugin.
type ConfigError struct {
	Stage string
	// Diagnostics are the HCL diagnostics, each "<summary>: <detail>" as
	// Nomad formats them (empty for StageAgentConfigParse).
	Diagnostics []string
	// Err is the parser's error for StageAgentConfigParse.
	Err error
}

// Error is the refusal in Nomad's words for the stage.
func (e *ConfigError) Error() string {
	switch e.Stage {
	case StageAgentConfigParse:
		// Nomad's own wording; the file is called agent.hcl in the vectors.
		return "failed to decode HCL file agent.hcl: " + e.Err.Error()
	case StageJobParse:
		return "failed to parse job config block: " + strings.Join(e.Diagnostics, "; ")
	default:
		return "failed to parse config: " + strings.Join(e.Diagnostics, "; ")
	}
}

// Unwrap makes errors.Is(err, ErrConfigRejected) true.
func (e *ConfigError) Unwrap() error { return ErrConfigRejected }

// EncodePluginConfig returns the SetConfigRequest.msgpack_config bytes a Nomad
// 2.0.6 client sends for an agent file block
//
//	plugin "<name>" {
//	  config {
//	    <body>
//	  }
//	}
//
// given spec, the plugin's ConfigSchema. body is the text between the braces
// of `config { }` in Nomad's agent configuration language (HCL 1): `x = {...}`
// and nested blocks become lists of objects, `${...}` is refused ("Variables
// not allowed") and `$${x}` delivers `${x}`. An empty body behaves like an
// absent config block: the schema's defaults apply.
//
// With a nil spec (ConfigSchema returned none) a non-empty body is an error
// and an empty one gives empty bytes. A configuration Nomad would refuse
// gives a *ConfigError; a schema Nomad cannot convert gives an error wrapping
// ErrInvalidSpec.
func EncodePluginConfig(spec *Spec, body string) ([]byte, error) {
	val, err := pluginConfigValue(spec, body)
	if err != nil || val == cty.NilVal {
		return nil, err
	}
	return marshalNomad(val)
}

// pluginConfigValue is EncodePluginConfig without the final msgpack step: the
// cty value Nomad's client decodes (cty.NilVal for a nil spec).
func pluginConfigValue(spec *Spec, body string) (cty.Value, error) {
	m, err := parseAgentPluginConfig(body)
	if err != nil {
		return cty.NilVal, err
	}
	if spec == nil {
		if len(m) > 0 {
			return cty.NilVal, &ConfigError{Stage: StagePluginConfigDecode,
				Diagnostics: []string{"configuration not allowed but config passed"}}
		}
		return cty.NilVal, nil
	}
	if m == nil {
		m = map[string]any{} // a missing config block still gets defaults
	}
	return decodeGenericConfig(spec, m, nil, StagePluginConfigDecode)
}

// TaskEnv is what a Nomad client offers for interpolation when it decodes a
// task config, and what the job parser knows.
type TaskEnv struct {
	// Env is the task's environment: NOMAD_* variables and the task's env
	// block. Each is a variable by its own name (${NOMAD_TASK_DIR}) and an
	// element of env (${env["NOMAD_TASK_DIR"]}).
	Env map[string]string
	// Node holds node attributes by their dotted names as Nomad's client has
	// them: "node.unique.name", "node.class", "attr.kernel.name",
	// "meta.rack". attr.* and meta.* are also reachable as node.attr.* and
	// node.meta.*.
	Node map[string]string
	// JobVariables are the job file's input variables (var.*), evaluated by
	// the job parser before submission.
	JobVariables map[string]cty.Value
}

// EncodeTaskConfig returns the TaskConfig.msgpack_driver_config bytes a Nomad
// 2.0.6 client sends in StartTask for a job file task block
//
//	task "x" {
//	  config {
//	    <body>
//	  }
//	}
//
// given spec, the driver's TaskConfigSchema, and env (may be nil). body is
// HCL 2 job syntax. The steps are Nomad's: the job parser evaluates var.*
// and functions, keeps references it does not know as `${...}` text, turns
// blocks and `x = {...}` into lists of objects and drops null attributes;
// numbers then travel as JSON float64 (integers above 2^53 lose precision);
// an empty config is dropped by the servers and fails at the client ("Root
// value must be object"); the client expands `${...}` from env and decodes
// against the schema. So `$$${x}` in body delivers `${x}`.
//
// Supported job-parser functions: go-cty's stdlib set as Nomad names it
// (upper, format, join, merge, ...), try, can and convert. Not supported:
// file system, encoding, crypto, cidr, uuid and yaml functions, locals.
func EncodeTaskConfig(spec *Spec, body string, env *TaskEnv) ([]byte, error) {
	val, err := taskConfigValue(spec, body, env)
	if err != nil {
		return nil, err
	}
	return marshalNomad(val)
}

// taskConfigValue is EncodeTaskConfig without the final msgpack step: the
// cty value Nomad's client decodes.
func taskConfigValue(spec *Spec, body string, env *TaskEnv) (cty.Value, error) {
	if spec == nil {
		return cty.NilVal, fmt.Errorf("%w: a task config schema is required", ErrInvalidSpec)
	}
	if env == nil {
		env = &TaskEnv{}
	}
	m, err := parseJobTaskConfig(body, env.JobVariables)
	if err != nil {
		return cty.NilVal, err
	}
	generic := viaJSONFloat(m)
	if len(m) == 0 {
		generic = nil // the servers drop an empty config map
	}
	return decodeGenericConfig(spec, generic, taskVariables(env), StageTaskConfigDecode)
}

// marshalNomad encodes val with its own concrete type, as Nomad does.
func marshalNomad(val cty.Value) ([]byte, error) {
	b, err := ctymsgpack.Marshal(val, val.Type())
	if err != nil {
		return nil, fmt.Errorf("encoding config as msgpack: %w", err)
	}
	return b, nil
}

// decodeGenericConfig is Nomad's client step: the generic config map is
// rendered as JSON, parsed with HCL's JSON syntax and decoded against the
// schema, with vars for interpolation (nil: variables not allowed).
func decodeGenericConfig(spec *Spec, generic any, vars map[string]cty.Value, stage string) (cty.Value, error) {
	dec, err := toHCLDec(spec)
	if err != nil {
		return cty.NilVal, err
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, generic); err != nil {
		return cty.NilVal, &ConfigError{Stage: stage,
			Diagnostics: []string{"Failed to encode label value: Label encoding failed: " + err.Error()}}
	}
	file, diags := hcljson.Parse(buf.Bytes(), "")
	if diags.HasErrors() {
		return cty.NilVal, &ConfigError{Stage: stage, Diagnostics: diagStrings(diags)}
	}
	ctx := &hcl.EvalContext{Variables: vars, Functions: functions()}
	val, diags := hcldec.Decode(file.Body, dec, ctx)
	if diags.HasErrors() {
		return cty.NilVal, &ConfigError{Stage: stage, Diagnostics: diagStrings(diags)}
	}
	return val, nil
}

// parseAgentPluginConfig reads body as the config block of a plugin block in
// an agent configuration file, with Nomad's HCL 1 decoder.
func parseAgentPluginConfig(body string) (map[string]any, error) {
	// Build the file the way an operator writes it, so that positions in
	// parse errors match what Nomad reports (body from line 3, column 5).
	// Heredocs would change meaning if indented, so leave those alone.
	indented := body
	if !strings.Contains(body, "<<") {
		lines := strings.Split(body, "\n")
		for i, l := range lines {
			if l != "" {
				lines[i] = "    " + l
			}
		}
		indented = strings.Join(lines, "\n")
	}
	src := "plugin \"driver\" {\n  config {\n" + indented + "\n  }\n}\n"
	var file struct {
		Plugins []struct {
			Name   string         `hcl:",key"`
			Config map[string]any `hcl:"config"`
		} `hcl:"plugin"`
	}
	if err := hcl1.Decode(&file, src); err != nil {
		return nil, &ConfigError{Stage: StageAgentConfigParse, Err: err}
	}
	if len(file.Plugins) != 1 {
		return nil, &ConfigError{Stage: StageAgentConfigParse,
			Err: errors.New("the config body closed the plugin block early")}
	}
	return file.Plugins[0].Config, nil
}

// viaJSONFloat mirrors the job's trip from the CLI to the servers as JSON:
// every number becomes a float64.
func viaJSONFloat(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = viaJSONFloat(e)
		}
		return out
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = viaJSONFloat(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = viaJSONFloat(e)
		}
		return out
	case int:
		return float64(x)
	case int64:
		return float64(x)
	default:
		return v
	}
}

// writeJSON renders a generic config the way Nomad's client does before
// parsing it with HCL's JSON syntax: compact, HTML characters as is, floats
// in their shortest form with "e" outside [1e-6, 1e21) and a ".0" on
// integral values. Object keys are sorted (Nomad uses map order, which only
// moves positions quoted in some error details).
func writeJSON(buf *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case string:
		writeJSONString(buf, x)
	case int:
		buf.WriteString(strconv.Itoa(x))
	case int64:
		buf.WriteString(strconv.FormatInt(x, 10))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("unsupported value: %v", x)
		}
		buf.WriteString(formatJSONFloat(x))
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, k)
			buf.WriteByte(':')
			if err := writeJSON(buf, x[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case []map[string]any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	default:
		return fmt.Errorf("unsupported value of type %T", v)
	}
	return nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	buf.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

func formatJSONFloat(f float64) string {
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.FormatFloat(f, 'e', -1, 64)
	}
	prec := -1
	if abs == 0 || abs == 1 {
		prec = 1
	} else if _, frac := math.Modf(abs); abs > 1 && frac == 0 {
		prec = 1
	}
	return strconv.FormatFloat(f, 'f', prec, 64)
}
