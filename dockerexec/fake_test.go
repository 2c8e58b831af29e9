// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/shoenig/test/must"
)

// fakeAPI is a DockerAPI double for the image paths. Methods it does not
// override hit the nil embedded interface and panic: a test that reaches
// them is calling something it did not expect.
type fakeAPI struct {
	DockerAPI

	mu       sync.Mutex
	images   map[string]bool
	pullBody string
	pullErr  error
	pulls    int
}

func (f *fakeAPI) DaemonHost() string { return "unix:///fake/docker.sock" }

func (f *fakeAPI) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.images[ref] {
		return image.InspectResponse{ID: "sha256:" + ref}, nil
	}
	return image.InspectResponse{}, fmt.Errorf("no such image: %s: %w", ref, cerrdefs.ErrNotFound)
}

func (f *fakeAPI) ImagePull(_ context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls++
	if f.pullErr != nil {
		return nil, f.pullErr
	}
	if !strings.Contains(f.pullBody, `"error"`) {
		if f.images == nil {
			f.images = map[string]bool{}
		}
		f.images[ref] = true
	}
	return io.NopCloser(strings.NewReader(f.pullBody)), nil
}

const progressStream = `{"status":"Pulling from actions/actions-runner","id":"latest"}
{"status":"Pulling fs layer","id":"aaa"}
{"status":"Pulling fs layer","id":"bbb"}
{"status":"Downloading","progressDetail":{"current":512,"total":2048},"id":"aaa"}
{"status":"Downloading","progressDetail":{"current":2048,"total":2048},"id":"aaa"}
{"status":"Download complete","id":"aaa"}
{"status":"Pull complete","id":"aaa"}
{"status":"Already exists","id":"bbb"}
{"status":"Digest: sha256:abc"}
{"status":"Status: Downloaded newer image for ghcr.io/actions/actions-runner:latest"}
`

func newFakeExecutor(t *testing.T, api *fakeAPI, mutate func(*Config)) (*Executor, *strings.Builder) {
	t.Helper()
	cfg := Config{ScaleSet: "linux", InstanceID: "host-a"}
	if mutate != nil {
		mutate(&cfg)
	}
	var logs strings.Builder
	var mu sync.Mutex
	h := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug})
	ex, err := New(cfg, api, slog.New(h))
	must.NoError(t, err)
	return ex, &logs
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

func TestExecutor_EnsureImage_pullsOnceForABurst(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{pullBody: progressStream}
	ex, logs := newFakeExecutor(t, api, nil)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = ex.EnsureImage(t.Context()) })
	}
	wg.Wait()
	for _, err := range errs {
		must.NoError(t, err)
	}
	must.EqOp(t, 1, api.pulls)
	out := logs.String()
	must.StrContains(t, out, `msg="pulling runner image"`)
	must.StrContains(t, out, `msg="pull progress"`)
	must.StrContains(t, out, "layer=aaa status=\"Pull complete\"")
	must.StrContains(t, out, `msg="pulled runner image"`)
	must.StrContains(t, out, `layers_done=2 layers=2 downloaded="2.0 KiB"`)
}

func TestExecutor_EnsureImage_pullFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		api     *fakeAPI
		policy  PullPolicy
		wantErr error
		wantMsg string
	}{
		{name: "stream_error", api: &fakeAPI{pullBody: `{"status":"Pulling"}` + "\n" + `{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}`},
			wantErr: ErrImageUnavailable, wantMsg: "manifest unknown"},
		{name: "request_error", api: &fakeAPI{pullErr: errors.New("dial tcp: lookup ghcr.io: no such host")},
			wantErr: ErrImageUnavailable, wantMsg: "no such host"},
		{name: "garbage_stream", api: &fakeAPI{pullBody: "<html>"}, wantErr: ErrImageUnavailable, wantMsg: "read progress stream"},
		{name: "never", api: &fakeAPI{}, policy: PullNever, wantErr: ErrImageUnavailable, wantMsg: `pull_policy is "never"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ex, _ := newFakeExecutor(t, tc.api, func(c *Config) { c.PullPolicy = tc.policy })
			err := ex.EnsureImage(t.Context())
			must.ErrorIs(t, err, tc.wantErr)
			must.StrContains(t, err.Error(), tc.wantMsg)
			must.StrContains(t, err.Error(), DefaultImage)
		})
	}
}

func TestExecutor_EnsureImage_pullAlwaysOnce(t *testing.T) {
	t.Parallel()
	api := &fakeAPI{pullBody: progressStream, images: map[string]bool{DefaultImage: true}}
	ex, _ := newFakeExecutor(t, api, func(c *Config) { c.PullPolicy = PullAlways })
	must.NoError(t, ex.EnsureImage(t.Context()))
	must.NoError(t, ex.EnsureImage(t.Context()))
	must.EqOp(t, 1, api.pulls)

	// With "missing", a present image is never pulled.
	api2 := &fakeAPI{images: map[string]bool{DefaultImage: true}}
	ex2, _ := newFakeExecutor(t, api2, nil)
	must.NoError(t, ex2.EnsureImage(t.Context()))
	must.EqOp(t, 0, api2.pulls)
}

func Test_pullProgress_summary(t *testing.T) {
	t.Parallel()
	p := newPullProgress()
	for _, m := range []pullMessage{
		{ID: "a", Status: "Downloading", ProgressDetail: struct {
			Current int64 `json:"current"`
			Total   int64 `json:"total"`
		}{Current: 10, Total: 100}},
		{ID: "b", Status: "Already exists"},
		{ID: "c", Status: "Pulling fs layer"},
	} {
		p.update(m)
	}
	done, layers, cur, size := p.summary()
	must.EqOp(t, 1, done)
	must.EqOp(t, 3, layers)
	must.EqOp(t, uint64(10), cur)
	must.EqOp(t, uint64(100), size)
}

func Test_redact(t *testing.T) {
	t.Parallel()
	const secret = "c2VjcmV0LWppdA=="
	inner := fmt.Errorf("create: bad env ACTIONS_RUNNER_INPUT_JITCONFIG=%s: %w", secret, ErrImageUnavailable)
	err := redact(inner, secret)
	must.StrNotContains(t, err.Error(), secret)
	must.StrContains(t, err.Error(), "[REDACTED]")
	must.ErrorIs(t, err, ErrImageUnavailable)
	must.Nil(t, errors.Unwrap(err))

	plain := errors.New("nothing secret")
	must.EqOp(t, plain, redact(plain, secret))
	must.Nil(t, redact(nil, secret))
}
