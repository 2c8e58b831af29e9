// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerbackend

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupImages()
	testutil.CleanupBuilds()
	os.Exit(code)
}

func Test_toBackendRunner(t *testing.T) {
	t.Parallel()
	created := time.Unix(1_700_000_000, 0)
	cases := []struct {
		name       string
		in         dockerexec.Runner
		want       backend.State
		wantReason string
	}{
		{name: "starting", in: dockerexec.Runner{State: container.StateCreated, Starting: true}, want: backend.StatePending},
		{name: "created_leftover", in: dockerexec.Runner{State: container.StateCreated}, want: backend.StateFailed,
			wantReason: "container created but never started (its start was interrupted)"},
		{name: "running", in: dockerexec.Runner{State: container.StateRunning}, want: backend.StateRunning},
		{name: "runner_id_label", in: dockerexec.Runner{State: container.StateRunning, Labels: map[string]string{labelRunnerID: "42"}}, want: backend.StateRunning},
		{name: "paused", in: dockerexec.Runner{State: container.StatePaused}, want: backend.StateRunning},
		{name: "restarting", in: dockerexec.Runner{State: container.StateRestarting}, want: backend.StateRunning, wantReason: "container is restarting"},
		{name: "removing", in: dockerexec.Runner{State: container.StateRemoving}, want: backend.StateExited},
		{name: "exit_0", in: dockerexec.Runner{State: container.StateExited}, want: backend.StateExited},
		{name: "exit_1", in: dockerexec.Runner{State: container.StateExited, ExitCode: 1}, want: backend.StateFailed, wantReason: "exit code 1"},
		{name: "oom", in: dockerexec.Runner{State: container.StateExited, ExitCode: 137, OOMKilled: true}, want: backend.StateFailed,
			wantReason: "exit code 137, killed: out of memory"},
		{name: "dead", in: dockerexec.Runner{State: container.StateDead, Error: "driver failed"}, want: backend.StateFailed,
			wantReason: "container dead: driver failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.in.Name, tc.in.ContainerID, tc.in.CreatedAt = "r1", "abc", created
			got := toBackendRunner(tc.in)
			must.EqOp(t, tc.want, got.State)
			must.EqOp(t, tc.wantReason, got.Reason)
			must.EqOp(t, "r1", got.Name)
			must.EqOp(t, "abc", got.ResourceID)
			must.EqOp(t, created, got.CreatedAt)
			wantID := 0
			if tc.in.Labels[labelRunnerID] != "" {
				wantID = 42
			}
			must.EqOp(t, wantID, got.RunnerID)
		})
	}
}

// TestBackend_engine drives the backend on the real test engine (skipped
// without one, failing under CI=true): a runner that keeps running, one that
// succeeds and one that fails show up with the right states; removing them
// leaves nothing behind.
func TestBackend_engine(t *testing.T) {
	t.Parallel()
	cli := testutil.DockerClient(t)
	bin := testutil.BuildBinary(t, "./sim/cmd/jitprobe")
	body, err := os.ReadFile(bin)
	must.NoError(t, err)
	files := append(testutil.HostExecutableFiles(t, "/bin/sh"),
		testutil.ImageFile{Path: "/bin/fakerunner", Mode: 0o755, Body: body})
	img := testutil.SharedImage(t, cli, "nomad-gha-test/dockerbackend-fakerunner", files,
		"USER runner", `ENTRYPOINT ["/bin/fakerunner"]`)

	instance := "t" + randHex(6)
	labels := map[string]string{dockerexec.LabelInstance: instance}
	testutil.RemoveContainersOnCleanup(t, cli, labels)
	newBackend := func(env map[string]string) *Backend {
		b, err := New(Config{
			Image: img, PullPolicy: "never", NetworkMode: "none", Command: []string{"/bin/fakerunner"},
			CPUs: 0.5, Memory: "64m", Env: env, InstanceID: instance,
		}, "linux", nil)
		must.NoError(t, err)
		return b
	}
	holding := newBackend(map[string]string{"FAKERUNNER_HOLD": "5m"})
	ok := newBackend(nil)
	failing := newBackend(map[string]string{"FAKERUNNER_EXIT": "3"})
	must.EqOp(t, "docker", ok.Name())
	must.NoError(t, ok.ensureImage(t.Context()))

	start := func(b *Backend, name string) string {
		id, err := b.StartRunner(t.Context(), name, fakeJIT(name))
		must.NoError(t, err)
		return id
	}
	busyName := "busy-" + randHex(3)
	runID, err := holding.StartIdentified(t.Context(), backend.Identity{Name: busyName, RunnerID: 777}, fakeJIT(busyName))
	must.NoError(t, err)
	okID := start(ok, "done-"+randHex(3))
	failID := start(failing, "fail-"+randHex(3))
	for _, id := range []string{okID, failID} {
		waitC, errC := cli.ContainerWait(t.Context(), id, container.WaitConditionNotRunning)
		select {
		case <-waitC:
		case err := <-errC:
			t.Fatal(err)
		}
	}

	list, err := ok.ListRunners(t.Context())
	must.NoError(t, err)
	must.Len(t, 3, list)
	byID := map[string]backend.Runner{}
	for _, r := range list {
		byID[r.ResourceID] = r
	}
	must.EqOp(t, backend.StateRunning, byID[runID].State)
	must.EqOp(t, 777, byID[runID].RunnerID, must.Sprint("the runner id label, for adoption after a restart"))
	must.EqOp(t, 0, byID[okID].RunnerID, must.Sprint("StartRunner records none"))
	must.EqOp(t, backend.StateExited, byID[okID].State)
	must.EqOp(t, backend.StateFailed, byID[failID].State)
	must.EqOp(t, "exit code 3", byID[failID].Reason)

	for _, id := range []string{runID, okID, failID} {
		must.NoError(t, ok.RemoveRunner(t.Context(), id))
	}
	list, err = ok.ListRunners(t.Context())
	must.NoError(t, err)
	must.SliceEmpty(t, list)
	for _, b := range []*Backend{holding, ok, failing} {
		b.Shutdown(context.Background())
	}
	testutil.AssertNoContainers(t, cli, labels)
}

func TestNew_badConfig(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Memory: "huge"}, "linux", nil)
	must.ErrorContains(t, err, `memory: "huge"`)
	_, err = New(Config{}, "", nil)
	must.ErrorContains(t, err, "scale_set")
}

func fakeJIT(name string) string {
	enc := base64.StdEncoding.EncodeToString
	runner, _ := json.Marshal(map[string]any{"agentName": name})
	files, _ := json.Marshal(map[string]string{".runner": enc(runner), ".credentials": enc([]byte("{}"))})
	return enc(files)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
