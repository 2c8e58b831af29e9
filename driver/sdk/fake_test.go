// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
)

// fakeDriver is a scripted sdk.Driver: each test sets the answers it needs
// and reads back what the adapter passed in. It implements none of the
// optional interfaces; fullDriver adds them.
type fakeDriver struct {
	mu sync.Mutex

	info         sdk.PluginInfo
	configSchema *hclspec.Spec
	taskSchema   *hclspec.Spec
	caps         *sdk.Capabilities

	fingerprints chan *sdk.Fingerprint
	events       chan *sdk.TaskEvent
	stats        chan *sdk.TaskResourceUsage
	waitCh       chan *sdk.ExitResult

	err     error // returned by every task RPC when set
	handle  *sdk.TaskHandle
	status  *sdk.TaskStatus
	execRes *sdk.ExecResult

	// recorded inputs
	gotConfig   *sdk.PluginConfig
	gotStart    *sdk.TaskConfig
	gotRecover  *sdk.TaskHandle
	gotTaskID   string
	gotTimeout  time.Duration
	gotSignal   string
	gotForce    bool
	gotCommand  []string
	gotInterval time.Duration
}

var _ sdk.Driver = (*fakeDriver)(nil)

func newFakeDriver() *fakeDriver {
	return &fakeDriver{
		info: sdk.PluginInfo{Name: "fake", Version: "1.2.3"},
		taskSchema: &hclspec.Spec{Kind: hclspec.KindObject, Attributes: map[string]*hclspec.Spec{
			"image": {Kind: hclspec.KindAttr, Name: "image", Type: "string", Required: true},
		}},
		caps: &sdk.Capabilities{FSIsolation: sdk.FSIsolationImage},
	}
}

func (f *fakeDriver) record(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeDriver) PluginInfo() sdk.PluginInfo      { return f.info }
func (f *fakeDriver) ConfigSchema() *hclspec.Spec     { return f.configSchema }
func (f *fakeDriver) TaskConfigSchema() *hclspec.Spec { return f.taskSchema }
func (f *fakeDriver) Capabilities() *sdk.Capabilities { return f.caps }
func (f *fakeDriver) SetConfig(c *sdk.PluginConfig) error {
	f.record(func() { f.gotConfig = c })
	return f.err
}

func (f *fakeDriver) Fingerprint(context.Context) (<-chan *sdk.Fingerprint, error) {
	return f.fingerprints, f.err
}

func (f *fakeDriver) TaskEvents(context.Context) (<-chan *sdk.TaskEvent, error) {
	return f.events, f.err
}

func (f *fakeDriver) StartTask(_ context.Context, c *sdk.TaskConfig) (*sdk.TaskHandle, error) {
	f.record(func() { f.gotStart = c })
	return f.handle, f.err
}

func (f *fakeDriver) RecoverTask(_ context.Context, h *sdk.TaskHandle) error {
	f.record(func() { f.gotRecover = h })
	return f.err
}

func (f *fakeDriver) WaitTask(_ context.Context, id string) (<-chan *sdk.ExitResult, error) {
	f.record(func() { f.gotTaskID = id })
	return f.waitCh, f.err
}

func (f *fakeDriver) StopTask(_ context.Context, id string, timeout time.Duration, signal string) error {
	f.record(func() { f.gotTaskID, f.gotTimeout, f.gotSignal = id, timeout, signal })
	return f.err
}

func (f *fakeDriver) DestroyTask(_ context.Context, id string, force bool) error {
	f.record(func() { f.gotTaskID, f.gotForce = id, force })
	return f.err
}

func (f *fakeDriver) InspectTask(_ context.Context, id string) (*sdk.TaskStatus, error) {
	f.record(func() { f.gotTaskID = id })
	return f.status, f.err
}

func (f *fakeDriver) TaskStats(_ context.Context, id string, interval time.Duration) (<-chan *sdk.TaskResourceUsage, error) {
	f.record(func() { f.gotTaskID, f.gotInterval = id, interval })
	return f.stats, f.err
}

func (f *fakeDriver) SignalTask(_ context.Context, id, signal string) error {
	f.record(func() { f.gotTaskID, f.gotSignal = id, signal })
	return f.err
}

func (f *fakeDriver) ExecTask(_ context.Context, id string, cmd []string, timeout time.Duration) (*sdk.ExecResult, error) {
	f.record(func() { f.gotTaskID, f.gotCommand, f.gotTimeout = id, cmd, timeout })
	return f.execRes, f.err
}

// fullDriver adds Init, Shutdown and exec streaming. Its streaming exec
// copies stdin to stdout, writes "err" to stderr and exits with the width of
// the terminal resize it received.
type fullDriver struct {
	*fakeDriver
	initCalls, shutdownCalls int
	execOpts                 *sdk.ExecOptions
}

var (
	_ sdk.Initializer  = (*fullDriver)(nil)
	_ sdk.Shutdowner   = (*fullDriver)(nil)
	_ sdk.ExecStreamer = (*fullDriver)(nil)
)

func (f *fullDriver) Init(context.Context) error {
	f.record(func() { f.initCalls++ })
	return f.err
}

func (f *fullDriver) Shutdown(context.Context) error {
	f.record(func() { f.shutdownCalls++ })
	return f.err
}

func (f *fullDriver) ExecTaskStreaming(_ context.Context, id string, opts *sdk.ExecOptions) (*sdk.ExitResult, error) {
	f.record(func() { f.gotTaskID, f.execOpts = id, opts })
	if f.err != nil {
		return nil, f.err
	}
	// The client resizes before sending stdin, so the resize is queued by
	// the time stdin reaches EOF.
	in, err := io.ReadAll(opts.Stdin)
	if err != nil {
		return nil, err
	}
	if _, err := opts.Stdout.Write(in); err != nil {
		return nil, err
	}
	if _, err := opts.Stderr.Write([]byte("err")); err != nil {
		return nil, err
	}
	select {
	case sz := <-opts.ResizeCh:
		return &sdk.ExitResult{ExitCode: sz.Width}, nil
	default:
		return nil, errors.New("no terminal resize received")
	}
}

// connect serves d in-process through go-plugin's real gRPC test connection
// and returns the client stubs.
func connect(t *testing.T, d sdk.Driver) *wire.Client {
	t.Helper()
	// Closing the client also stops the server (through go-plugin's
	// controller service); stopping it here as well would race.
	client, _ := plugin.TestPluginGRPCConn(t, false, sdk.PluginSet(d, nil))
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(sdk.PluginKey)
	must.NoError(t, err)
	c, ok := raw.(*wire.Client)
	must.True(t, ok, must.Sprintf("dispensed %T, want *wire.Client", raw))
	return c
}
