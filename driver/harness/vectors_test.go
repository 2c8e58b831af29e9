// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/shoenig/test/must"
	"google.golang.org/protobuf/proto"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	hclspecpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/hclspec"
	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// The golden vectors: what a real Nomad 2.0.6 client sends for a schema and
// a config block. The harness must deliver the same bytes to the driver. The
// repository's copy lives with the hclspec encoder's tests.
const vectorsPath = "driver/sdk/hclspec/testdata/nomad-config-encoding.json"

type vectorCase struct {
	Name       string  `json:"name"`
	Path       string  `json:"path"`
	SchemaName string  `json:"schema_name"`
	SpecHex    string  `json:"spec_hex"`
	ConfigBody *string `json:"config_body"`
	Result     string  `json:"result"`
	MsgpackHex string  `json:"msgpack_hex"`
	Error      *struct {
		Stage            string   `json:"stage"`
		Diagnostics      []string `json:"diagnostics"`
		Nondeterministic bool     `json:"nondeterministic"`
	} `json:"error"`
}

func loadVectors(t *testing.T) []vectorCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), vectorsPath))
	must.NoError(t, err)
	var file struct {
		Cases []vectorCase `json:"cases"`
	}
	must.NoError(t, json.Unmarshal(data, &file))
	return file.Cases
}

func (c vectorCase) spec(t *testing.T) *hclspec.Spec {
	t.Helper()
	raw, err := hex.DecodeString(c.SpecHex)
	must.NoError(t, err)
	var pb hclspecpb.Spec
	must.NoError(t, proto.Unmarshal(raw, &pb))
	s, err := wire.SpecFromProto(&pb)
	must.NoError(t, err)
	return s
}

func (c vectorCase) body() string {
	if c.ConfigBody == nil {
		return ""
	}
	return *c.ConfigBody
}

// usesVariables reports a config whose bytes depend on the client's
// interpolation variables, which the harness fills with its own paths.
func (c vectorCase) usesVariables() bool { return strings.Contains(c.body(), "${") }

func TestHarness_vectors_pluginConfigReachesDriver(t *testing.T) {
	t.Parallel()
	for _, c := range loadVectors(t) {
		if c.Path != "plugin_config" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			rec := newRecorder(c.spec(t), hclspec.Object(map[string]*hclspec.Spec{"x": hclspec.Attr("x", "string", false)}))
			opts := harness.Options{PluginConfig: c.body()}
			if c.Result == "ok" {
				harness.InProcess(t, rec.driver, opts)
				must.Eq(t, c.MsgpackHex, hex.EncodeToString(rec.pluginConfig()))
				return
			}
			ft := &fakeT{TB: t}
			runFatal(func() { harness.InProcess(ft, rec.driver, opts) })
			must.True(t, ft.failed)
			if c.Error.Stage == hclspec.StagePluginConfigDecode && !c.Error.Nondeterministic {
				for _, d := range c.Error.Diagnostics {
					must.StrContains(t, ft.msg, d)
				}
			}
		})
	}
}

func TestHarness_vectors_taskConfigReachesDriver(t *testing.T) {
	t.Parallel()
	bySchema := map[string][]vectorCase{}
	for _, c := range loadVectors(t) {
		if c.Path == "task_config" && !c.usesVariables() {
			bySchema[c.SchemaName] = append(bySchema[c.SchemaName], c)
		}
	}
	for name, cases := range bySchema {
		t.Run(name, func(t *testing.T) {
			rec := newRecorder(nil, cases[0].spec(t))
			h := harness.InProcess(t, rec.driver, harness.Options{})
			for _, c := range cases {
				task, err := h.TryStartTask(harness.TaskSpec{Name: "build", JobName: "vectors", Group: "runner", Config: c.body()})
				if c.Result == "ok" {
					must.NoError(t, err, must.Sprintf("case %s", c.Name))
					must.Eq(t, c.MsgpackHex, hex.EncodeToString(rec.taskConfig(task.ID)), must.Sprintf("case %s", c.Name))
					continue
				}
				var verr *harness.ValidationError
				must.True(t, errors.As(err, &verr), must.Sprintf("case %s: err = %v", c.Name, err))
				var cerr *hclspec.ConfigError
				must.True(t, errors.As(err, &cerr), must.Sprintf("case %s", c.Name))
				must.Eq(t, c.Error.Stage, cerr.Stage, must.Sprintf("case %s", c.Name))
				if !c.Error.Nondeterministic {
					must.Eq(t, c.Error.Diagnostics, cerr.Diagnostics, must.Sprintf("case %s", c.Name))
				}
			}
		})
	}
}

// recorder is a driver that records the configs it receives and runs
// nothing: its tasks "exit" at once.
type recorder struct {
	pluginSchema, taskSchema *hclspec.Spec

	mu     sync.Mutex
	plugin []byte
	tasks  map[string][]byte
}

func newRecorder(pluginSchema, taskSchema *hclspec.Spec) *recorder {
	return &recorder{pluginSchema: pluginSchema, taskSchema: taskSchema, tasks: map[string][]byte{}}
}

func (r *recorder) driver(hclog.Logger) sdk.Driver { return r }

func (r *recorder) pluginConfig() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.plugin
}

func (r *recorder) taskConfig(id string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tasks[id]
}

func (r *recorder) PluginInfo() sdk.PluginInfo {
	return sdk.PluginInfo{Name: "recorder", Version: "0.0.1"}
}
func (r *recorder) ConfigSchema() *hclspec.Spec                        { return r.pluginSchema }
func (r *recorder) TaskConfigSchema() *hclspec.Spec                    { return r.taskSchema }
func (r *recorder) Capabilities() *sdk.Capabilities                    { return &sdk.Capabilities{} }
func (r *recorder) RecoverTask(context.Context, *sdk.TaskHandle) error { return nil }

func (r *recorder) SetConfig(cfg *sdk.PluginConfig) error {
	r.mu.Lock()
	r.plugin = cfg.RawConfig
	r.mu.Unlock()
	return nil
}

func (r *recorder) Fingerprint(context.Context) (<-chan *sdk.Fingerprint, error) {
	ch := make(chan *sdk.Fingerprint, 1)
	ch <- &sdk.Fingerprint{Health: sdk.HealthStateHealthy, HealthDescription: "ok"}
	return ch, nil
}

func (r *recorder) TaskEvents(context.Context) (<-chan *sdk.TaskEvent, error) {
	return make(chan *sdk.TaskEvent), nil
}

func (r *recorder) StartTask(_ context.Context, cfg *sdk.TaskConfig) (*sdk.TaskHandle, error) {
	r.mu.Lock()
	r.tasks[cfg.ID] = cfg.RawDriverConfig
	r.mu.Unlock()
	return &sdk.TaskHandle{Version: 1, Config: cfg, State: sdk.TaskStateRunning}, nil
}

func (r *recorder) WaitTask(context.Context, string) (<-chan *sdk.ExitResult, error) {
	ch := make(chan *sdk.ExitResult, 1)
	ch <- &sdk.ExitResult{}
	return ch, nil
}

func (r *recorder) StopTask(context.Context, string, time.Duration, string) error { return nil }
func (r *recorder) DestroyTask(context.Context, string, bool) error               { return nil }

func (r *recorder) InspectTask(context.Context, string) (*sdk.TaskStatus, error) {
	return nil, sdk.ErrNotSupported
}

func (r *recorder) TaskStats(context.Context, string, time.Duration) (<-chan *sdk.TaskResourceUsage, error) {
	return nil, sdk.ErrNotSupported
}

func (r *recorder) SignalTask(context.Context, string, string) error { return sdk.ErrNotSupported }

func (r *recorder) ExecTask(context.Context, string, []string, time.Duration) (*sdk.ExecResult, error) {
	return nil, sdk.ErrNotSupported
}
