// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package hclspec

import (
	"errors"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

// exampleTaskSpec reads like a driver's config.go would.
var exampleTaskSpec = Object(map[string]*Spec{
	"image":   Attr("image", "string", true),
	"command": Attr("command", "string", false),
	"args":    Attr("args", "list(string)", false),
	"cpu":     Default(Attr("cpu", "number", false), Literal("2")),
	"ratio":   Attr("ratio", "number", false),
	"big":     Attr("big", "number", false),
	"timeout": Default(Attr("timeout", "string", false), Literal(`"30s"`)),
	"tags":    Default(Attr("tags", "list(string)", false), Literal(`["a", "b"]`)),
	"kind":    Literal(`upper("vm")`),
	"env":     BlockAttrs("env", "string", false),
	"labels":  Attr("labels", "list(map(string))", false),
	"network": Block("network", false, Object(map[string]*Spec{
		"mode": Default(Attr("mode", "string", false), Literal(`"nat"`)),
		"port": BlockList("port", Object(map[string]*Spec{
			"label": Attr("", "string", true),
			"to":    Attr("to", "number", false),
		})),
	})),
	"dir": BlockList("dir", Object(map[string]*Spec{
		"host_path": Attr("host_path", "string", true),
		"read_only": Default(Attr("read_only", "bool", false), Literal("false")),
	})).WithItems(0, 2),
	"listener": BlockMap("listener", []string{"name"}, Object(map[string]*Spec{
		"port": Attr("port", "number", true),
	})),
})

type exampleTask struct {
	Image     string                     `codec:"image"`
	Command   *string                    `codec:"command"`
	Args      []string                   `codec:"args"`
	CPU       uint8                      `codec:"cpu"`
	Ratio     float64                    `codec:"ratio"`
	Big       string                     `codec:"-"`
	BigRaw    any                        `codec:"big"`
	Timeout   time.Duration              `codec:"timeout"`
	Tags      []string                   `codec:"tags"`
	Kind      string                     `codec:"kind"`
	Env       map[string]string          `codec:"env"`
	Labels    map[string]string          `codec:"labels"`
	Network   *exampleNetwork            `codec:"network"`
	Dirs      []exampleDir               `codec:"dir"`
	Listeners map[string]exampleListener `codec:"listener"`
}

type exampleNetwork struct {
	Mode  string        `codec:"mode"`
	Ports []examplePort `codec:"port"`
}

type examplePort struct {
	Label string `codec:"label"`
	To    int    `codec:"to"`
}

type exampleDir struct {
	HostPath string `codec:"host_path"`
	ReadOnly bool   `codec:"read_only"`
}

type exampleListener struct {
	Port int `codec:"port"`
}

func decodeTaskBody(t *testing.T, spec *Spec, body string, out any) error {
	t.Helper()
	raw, err := EncodeTaskConfig(spec, body, &TaskEnv{
		Env:  map[string]string{"NOMAD_TASK_DIR": "/alloc/task/local"},
		Node: map[string]string{"node.unique.name": "mac-1", "attr.kernel.name": "darwin"},
	})
	if err != nil {
		return err
	}
	return Decode(spec, raw, out)
}

func TestDecode_roundTripFromTaskHCL(t *testing.T) {
	t.Parallel()
	must.NoError(t, exampleTaskSpec.Validate())
	cases := []struct {
		name string
		body string
		want exampleTask
	}{
		{
			name: "required only, defaults and literals apply",
			body: `image = "img"`,
			want: exampleTask{Image: "img", CPU: 2, Timeout: 30 * time.Second,
				Tags: []string{"a", "b"}, Kind: "VM", Dirs: []exampleDir{}, Listeners: map[string]exampleListener{}},
		},
		{
			name: "everything set",
			body: `
image   = "img"
command = "${NOMAD_TASK_DIR}/run.sh"
args    = ["--host", "${node.unique.name}", "--os", "${attr.kernel.name}"]
cpu     = 4
ratio   = 0.1
big     = 18446744073709551616
timeout = "2m"
tags    = []
env {
  HOME = "/Users/admin"
}
labels = { team = "ci" }
network {
  mode = "softnet"
  port {
    label = "ssh"
    to    = 22
  }
  port {
    label = "vnc"
  }
}
dir {
  host_path = "/cache"
}
dir {
  host_path = "/tools"
  read_only = true
}
listener "http" {
  port = 80
}
listener "https" {
  port = 443
}
`,
			want: exampleTask{
				Image: "img", Command: ptr("/alloc/task/local/run.sh"),
				Args: []string{"--host", "mac-1", "--os", "darwin"},
				CPU:  4, Ratio: 0.1, BigRaw: 1.8446744073709552e19, Timeout: 2 * time.Minute,
				Tags: []string{}, Kind: "VM",
				Env:     map[string]string{"HOME": "/Users/admin"},
				Labels:  map[string]string{"team": "ci"},
				Network: &exampleNetwork{Mode: "softnet", Ports: []examplePort{{Label: "ssh", To: 22}, {Label: "vnc"}}},
				Dirs:    []exampleDir{{HostPath: "/cache"}, {HostPath: "/tools", ReadOnly: true}},
				Listeners: map[string]exampleListener{
					"http": {Port: 80}, "https": {Port: 443},
				},
			},
		},
		{
			name: "empty block gets nested defaults",
			body: "image = \"img\"\nnetwork {}",
			want: exampleTask{Image: "img", CPU: 2, Timeout: 30 * time.Second,
				Tags: []string{"a", "b"}, Kind: "VM", Network: &exampleNetwork{Mode: "nat", Ports: []examplePort{}},
				Dirs: []exampleDir{}, Listeners: map[string]exampleListener{}},
		},
		{
			name: "env in attribute syntax through block_attrs",
			body: "image = \"img\"\nenv = { A = \"1\", B = 2 }",
			want: exampleTask{Image: "img", CPU: 2, Timeout: 30 * time.Second,
				Tags: []string{"a", "b"}, Kind: "VM", Env: map[string]string{"A": "1", "B": "2"},
				Dirs: []exampleDir{}, Listeners: map[string]exampleListener{}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got exampleTask
			must.NoError(t, decodeTaskBody(t, exampleTaskSpec, tc.body, &got))
			must.Eq(t, tc.want, got)
		})
	}
}

func TestEncodeTaskConfig_rejectsBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		want string
	}{
		{"missing required", `command = "x"`,
			`failed to parse config: Missing required argument: The argument "image" is required, but no definition was found.`},
		{"wrong type", "image = \"img\"\ncpu = \"many\"",
			`failed to parse config: Incorrect attribute value type: Inappropriate value for attribute "cpu": a number is required.`},
		{"unknown attribute", "image = \"img\"\ncpus = 2",
			`failed to parse config: Invalid label: No argument or block type is named "cpus". Did you mean "cpu"?`},
		{"unknown attribute in block", "image = \"img\"\nnetwork {\n  speed = 1\n}",
			`failed to parse config: Invalid label: No argument or block type is named "speed".`},
		{"too many blocks", "image = \"img\"\ndir {\n host_path = \"a\"\n}\ndir {\n host_path = \"b\"\n}\ndir {\n host_path = \"c\"\n}",
			`failed to parse config: Too many dir blocks: No more than 2 "dir" blocks are allowed`},
		{"unknown variable", "image = \"${NOMAD_NOPE}\"",
			`failed to parse config: Unknown variable: There is no variable named "NOMAD_NOPE".`},
		{"empty config", "",
			`failed to parse config: Root value must be object: The root value in a JSON-based configuration must be either a JSON object or a JSON array of objects.`},
		{"job syntax error", "image = ",
			`failed to parse job config block: Missing expression: Expected the start of an expression, but found the end of the file.`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got exampleTask
			err := decodeTaskBody(t, exampleTaskSpec, tc.body, &got)
			must.ErrorIs(t, err, ErrConfigRejected)
			must.EqError(t, err, tc.want)
		})
	}
}

func TestDecode_rejectsMismatchedStruct(t *testing.T) {
	t.Parallel()
	raw, err := EncodeTaskConfig(exampleTaskSpec, "image = \"img\"\nnetwork {\n port {\n  label = \"x\"\n  to = 70000\n }\n}", nil)
	must.NoError(t, err)

	type narrowPort struct {
		Label string `codec:"label"`
		To    uint16 `codec:"to"`
	}
	type narrow struct {
		exampleTask
		Network *struct {
			Mode  string       `codec:"mode"`
			Ports []narrowPort `codec:"port"`
		} `codec:"network"`
	}
	var n narrow
	err = Decode(exampleTaskSpec, raw, &n)
	must.EqError(t, err, `field "network.port[0].to": 70000 is out of range for uint16`)

	type missingField struct {
		Image string `codec:"image"`
	}
	var m missingField
	err = Decode(exampleTaskSpec, raw, &m)
	var de *DecodeError
	must.True(t, errors.As(err, &de))
	must.Eq(t, "args", de.Path) // the first key in sorted order without a field

	// A value carrying a key the schema does not declare.
	narrowSpec := Object(map[string]*Spec{"image": Attr("image", "string", true)})
	err = Decode(narrowSpec, raw, &exampleTask{})
	must.EqError(t, err, `field "args": not declared in the schema`)
}

func TestEncodePluginConfig_roundTrip(t *testing.T) {
	t.Parallel()
	spec := Object(map[string]*Spec{
		"tart_path":   Default(Attr("tart_path", "string", false), Literal(`"tart"`)),
		"max_vms":     Default(Attr("max_vms", "number", false), Literal("2")),
		"gc_interval": Default(Attr("gc_interval", "string", false), Literal(`"5m"`)),
		"pool": BlockList("pool", Object(map[string]*Spec{
			"name":  Attr("name", "string", true),
			"image": Attr("image", "string", true),
			"size":  Default(Attr("size", "number", false), Literal("1")),
		})),
	})
	type pool struct {
		Name  string `codec:"name"`
		Image string `codec:"image"`
		Size  int    `codec:"size"`
	}
	type pluginConfig struct {
		TartPath   string        `codec:"tart_path"`
		MaxVMs     int           `codec:"max_vms"`
		GCInterval time.Duration `codec:"gc_interval"`
		Pools      []pool        `codec:"pool"`
	}
	raw, err := EncodePluginConfig(spec, "max_vms = 3\npool {\n  name = \"a\"\n  image = \"img\"\n}")
	must.NoError(t, err)
	var got pluginConfig
	must.NoError(t, Decode(spec, raw, &got))
	must.Eq(t, pluginConfig{TartPath: "tart", MaxVMs: 3, GCInterval: 5 * time.Minute,
		Pools: []pool{{Name: "a", Image: "img", Size: 1}}}, got)

	_, err = EncodePluginConfig(spec, `tart_path = "${HOME}/tart"`)
	must.EqError(t, err, "failed to parse config: Variables not allowed: Variables may not be used here.")
}

func TestEncodePluginConfig_nilSpec(t *testing.T) {
	t.Parallel()
	raw, err := EncodePluginConfig(nil, "")
	must.NoError(t, err)
	must.SliceEmpty(t, raw)
	_, err = EncodePluginConfig(nil, "x = 1")
	must.ErrorIs(t, err, ErrConfigRejected)
}

func ptr[T any](v T) *T { return &v }
