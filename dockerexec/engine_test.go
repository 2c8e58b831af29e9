// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// TestExecutor_StartRunner_concurrent starts runners at once with the
// default file delivery; each container's fakerunner must find its own JIT
// config through the wrapper, as the runner user, with the file emptied.
func TestExecutor_StartRunner_concurrent(t *testing.T) {
	t.Parallel()
	const n = 8
	volume := "dockerexec-test-" + randHex(4)
	h := newHarness(t, func(c *dockerexec.Config) {
		c.CPUs = 0.5
		c.MemoryBytes = 64 << 20
		c.SharedVolume = volume
		c.SharedVolumePath = "/cache"
		c.Labels = map[string]string{"team": "ci"}
	})
	t.Cleanup(func() { _ = h.cli.VolumeRemove(context.Background(), volume, true) })

	names := make([]string, n)
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		names[i] = runnerName("conc", i)
		jit := h.jit(names[i])
		wg.Go(func() { ids[i], errs[i] = h.ex.StartRunner(t.Context(), names[i], jit) })
	}
	wg.Wait()
	for i := range n {
		must.NoError(t, errs[i], must.Sprintf("runner %s", names[i]))
	}

	for i, id := range ids {
		code, out := waitExit(t, h.cli, id)
		must.EqOp(t, int64(0), code, must.Sprintf("fakerunner output: %s", out))
		must.StrContains(t, out, fmt.Sprintf("runner=%s files=2 uid=%d", names[i], testutil.RunnerUID))

		info, err := h.cli.ContainerInspect(t.Context(), id)
		must.NoError(t, err)
		must.EqOp(t, "/"+names[i], info.Name)
		must.EqOp(t, names[i], info.Config.Labels[dockerexec.LabelRunner])
		must.EqOp(t, h.cfg.InstanceID, info.Config.Labels[dockerexec.LabelInstance])
		must.EqOp(t, "dockerexec-test", info.Config.Labels[dockerexec.LabelScaleSet])
		must.EqOp(t, "ci", info.Config.Labels["team"])
		must.EqOp(t, container.NetworkMode("none"), info.HostConfig.NetworkMode)
		must.EqOp(t, int64(500_000_000), info.HostConfig.NanoCPUs)
		must.EqOp(t, int64(64<<20), info.HostConfig.Memory)
		must.SliceContainsFunc(t, info.HostConfig.Mounts, mount.Mount{Type: mount.TypeVolume, Source: volume, Target: "/cache"},
			func(a, b mount.Mount) bool { return a.Type == b.Type && a.Source == b.Source && a.Target == b.Target })
		// The secret is in none of the container's configuration.
		h.assertSecretFree("container env", strings.Join(info.Config.Env, "\n"))
		h.assertSecretFree("container command", strings.Join(append(slices.Clone(info.Config.Entrypoint), info.Config.Cmd...), " "))
		h.assertSecretFree("container labels", fmt.Sprint(info.Config.Labels))
		h.assertSecretFree("container output", out)
	}

	runners, err := h.ex.Runners(t.Context())
	must.NoError(t, err)
	must.Len(t, n, runners)
	for _, r := range runners {
		must.True(t, r.Stopped(), must.Sprintf("runner %s state %s", r.Name, r.State))
		must.EqOp(t, 0, r.ExitCode)
	}

	for _, id := range ids {
		must.NoError(t, h.ex.RemoveRunner(t.Context(), id))
		// Removing again is not an error.
		must.NoError(t, h.ex.RemoveRunner(t.Context(), id))
	}
	testutil.AssertNoContainers(t, h.cli, h.labels)
}

// TestExecutor_StartRunner_envDelivery passes the JIT config the way GitHub's
// dockerscaleset does: in the container environment, read directly by the
// runner command with no wrapper.
func TestExecutor_StartRunner_envDelivery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *dockerexec.Config) {
		c.JITConfigDelivery = dockerexec.DeliveryEnv
		c.Env = nil
		c.User = "root"
	})
	name := runnerName("env", 0)
	jit := h.jit(name)
	id, err := h.ex.StartRunner(t.Context(), name, jit)
	must.NoError(t, err)
	code, out := waitExit(t, h.cli, id)
	must.EqOp(t, int64(0), code, must.Sprintf("output: %s", out))
	must.StrContains(t, out, "runner="+name+" files=2 uid=0")

	info, err := h.cli.ContainerInspect(t.Context(), id)
	must.NoError(t, err)
	must.SliceContains(t, info.Config.Env, dockerexec.JITConfigEnv+"="+jit)
	must.SliceEmpty(t, info.Config.Entrypoint[1:]) // the image's own entrypoint, no wrapper

	must.NoError(t, h.ex.RemoveRunner(t.Context(), id))
	testutil.AssertNoContainers(t, h.cli, h.labels)
}

// TestExecutor_StartRunner_usedJITFile restarts a finished file-delivery
// container: the wrapper finds the JIT config file empty and refuses to run
// the runner again with a used, single-use config.
func TestExecutor_StartRunner_usedJITFile(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	name := runnerName("reuse", 0)
	id, err := h.ex.StartRunner(t.Context(), name, h.jit(name))
	must.NoError(t, err)
	code, _ := waitExit(t, h.cli, id)
	must.EqOp(t, int64(0), code)

	must.NoError(t, h.cli.ContainerStart(t.Context(), id, container.StartOptions{}))
	code, out := waitExit(t, h.cli, id)
	must.EqOp(t, int64(78), code)
	must.StrContains(t, out, "no JIT config")
	must.NoError(t, h.ex.RemoveRunner(t.Context(), id))
}

// TestExecutor_Reconcile_states runs one runner that fails, one that keeps
// running; reconcile removes only the ended one and reports its exit code.
func TestExecutor_Reconcile_states(t *testing.T) {
	t.Parallel()
	failing := newHarness(t, func(c *dockerexec.Config) { c.Env["FAKERUNNER_EXIT"] = "7" })
	name := runnerName("fail", 0)
	failedID, err := failing.ex.StartRunner(t.Context(), name, failing.jit(name))
	must.NoError(t, err)
	code, _ := waitExit(t, failing.cli, failedID)
	must.EqOp(t, int64(7), code)

	// Same instance and scale set, runners that hold: one executor's view
	// covers both.
	holding := failing.cfg
	holding.Env = map[string]string{"FAKERUNNER_HOLD": "5m"}
	ex, err := dockerexec.New(holding, failing.cli, failing.logger())
	must.NoError(t, err)
	runName := runnerName("hold", 0)
	runID, err := ex.StartRunner(t.Context(), runName, failing.jit(runName))
	must.NoError(t, err)

	runners, err := ex.Runners(t.Context())
	must.NoError(t, err)
	must.Len(t, 2, runners)
	byName := map[string]dockerexec.Runner{}
	for _, r := range runners {
		byName[r.Name] = r
	}
	must.EqOp(t, container.StateExited, byName[name].State)
	must.EqOp(t, 7, byName[name].ExitCode)
	must.EqOp(t, container.StateRunning, byName[runName].State)

	rep, err := ex.Reconcile(t.Context())
	must.NoError(t, err)
	must.Len(t, 1, rep.Removed)
	must.EqOp(t, failedID, rep.Removed[0].ContainerID)
	must.Len(t, 1, rep.Remaining)
	must.EqOp(t, runID, rep.Remaining[0].ContainerID)

	must.NoError(t, ex.RemoveRunner(t.Context(), runID))
	testutil.AssertNoContainers(t, failing.cli, failing.labels)
}

// TestExecutor_StartRunner_badInput checks that bad input and a missing
// image or engine give errors that say what is wrong, and leave nothing
// behind.
func TestExecutor_StartRunner_badInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	missing := "nomad-gha-test/does-not-exist:" + randHex(4)
	never := func(c *dockerexec.Config) { c.Image = missing; c.PullPolicy = dockerexec.PullNever }
	unpullable := func(c *dockerexec.Config) { c.Image = "localhost:1/nomad-gha-test/missing:" + randHex(4) }
	cases := []struct {
		name    string
		mutate  func(*dockerexec.Config)
		runner  string
		jit     bool
		wantErr error
		wantMsg []string
	}{
		{name: "empty_name", runner: "", jit: true, wantErr: dockerexec.ErrInvalidInput, wantMsg: []string{"empty runner name"}},
		{name: "bad_name", runner: "bad name/x", jit: true, wantErr: dockerexec.ErrInvalidInput, wantMsg: []string{`"bad name/x"`}},
		{name: "empty_jit", runner: "ok", jit: false, wantErr: dockerexec.ErrInvalidInput, wantMsg: []string{"empty JIT config"}},
		{name: "missing_image_never", mutate: never, runner: "x", jit: true, wantErr: dockerexec.ErrImageUnavailable,
			wantMsg: []string{missing, `pull_policy is "never"`}},
		{name: "missing_image_no_registry", mutate: unpullable, runner: "x", jit: true, wantErr: dockerexec.ErrImageUnavailable,
			wantMsg: []string{"localhost:1/nomad-gha-test/missing", "pull failed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := h.cfg
			if tc.mutate != nil {
				tc.mutate(&cfg)
			}
			ex, err := dockerexec.New(cfg, h.cli, h.logger())
			must.NoError(t, err)
			jit := ""
			runner := tc.runner
			if runner != "" {
				runner += "-" + randHex(3)
			}
			if tc.runner == "bad name/x" {
				runner = tc.runner
			}
			if tc.jit {
				jit = h.jit(runner)
			}
			id, err := ex.StartRunner(t.Context(), runner, jit)
			must.Eq(t, "", id)
			must.ErrorIs(t, err, tc.wantErr)
			t.Logf("error: %v", err)
			for _, m := range tc.wantMsg {
				must.StrContains(t, err.Error(), m)
			}
			h.assertSecretFree("error", err.Error())
		})
	}
	testutil.AssertNoContainers(t, h.cli, h.labels)
}

// TestExecutor_EnsureImage_present: an image the engine has needs no
// registry with pull_policy missing or never; "always" must reach a
// registry and says so when it cannot.
func TestExecutor_EnsureImage_present(t *testing.T) {
	t.Parallel()
	cli := testutil.DockerClient(t)
	img := testImage(t, cli)
	for _, tc := range []struct {
		policy  dockerexec.PullPolicy
		wantErr error
	}{
		{policy: dockerexec.PullMissing},
		{policy: dockerexec.PullNever},
		{policy: dockerexec.PullAlways, wantErr: dockerexec.ErrImageUnavailable},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			cfg := baseConfig(img)
			cfg.PullPolicy = tc.policy
			ex, err := dockerexec.New(cfg, cli, nil)
			must.NoError(t, err)
			err = ex.EnsureImage(t.Context())
			if tc.wantErr == nil {
				must.NoError(t, err)
				return
			}
			must.ErrorIs(t, err, tc.wantErr)
			must.StrContains(t, err.Error(), img)
		})
	}
}

// TestExecutor_StartRunner_engineUnreachable points the executor at a
// socket nobody serves.
func TestExecutor_StartRunner_engineUnreachable(t *testing.T) {
	t.Parallel()
	sock := "unix://" + t.TempDir() + "/no-docker.sock"
	cli, err := client.NewClientWithOpts(client.WithHost(sock), client.WithAPIVersionNegotiation())
	must.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	cfg := baseConfig("nomad-gha-test/any:1")
	ex, err := dockerexec.New(cfg, cli, nil)
	must.NoError(t, err)

	jit := fakeJIT("r1", "jit-secret-unreachable")
	_, err = ex.StartRunner(t.Context(), "r1", jit)
	must.ErrorIs(t, err, dockerexec.ErrEngineUnreachable)
	t.Logf("error: %v", err)
	must.StrContains(t, err.Error(), sock)
	must.StrNotContains(t, err.Error(), "jit-secret-unreachable")
	must.StrNotContains(t, err.Error(), jit)

	_, err = ex.Runners(t.Context())
	must.ErrorIs(t, err, dockerexec.ErrEngineUnreachable)
	must.ErrorIs(t, ex.Init(t.Context()), dockerexec.ErrEngineUnreachable)
}

// TestExecutor_Cleanup_reclaimsOnlyItsOwn leaves an ended runner, a running
// one, the shared volume and a dangling image of someone else behind.
// Cleanup removes the ended runner but keeps the running runner (its job
// finishes), the volume it uses and the foreign image (it used to prune
// every dangling image and the build cache of the engine); once that runner
// is gone, Shutdown removes the volume. No runner starts afterwards.
func TestExecutor_Cleanup_reclaimsOnlyItsOwn(t *testing.T) {
	t.Parallel()
	volume := "dockerexec-test-" + randHex(4)
	h := newHarness(t, func(c *dockerexec.Config) { c.SharedVolume = volume })
	t.Cleanup(func() { _ = h.cli.VolumeRemove(context.Background(), volume, true) })
	must.NoError(t, h.ex.Init(t.Context()))
	ended := runnerName("ended", 0)
	endedID, err := h.ex.StartRunner(t.Context(), ended, h.jit(ended))
	must.NoError(t, err)
	code, _ := waitExit(t, h.cli, endedID)
	must.EqOp(t, int64(0), code)

	holdCfg := h.cfg
	holdCfg.Env = map[string]string{"FAKERUNNER_HOLD": "5m"}
	holdEx, err := dockerexec.New(holdCfg, h.cli, h.logger())
	must.NoError(t, err)
	busy := runnerName("busy", 0)
	busyID, err := holdEx.StartRunner(t.Context(), busy, h.jit(busy))
	must.NoError(t, err)

	// Importing the same tag twice leaves the first image dangling: an
	// image of someone else on a shared engine. Cleanup used to prune every
	// dangling image and the whole build cache, with no label filter.
	ref := "nomad-gha-test/dockerexec-dangling:" + randHex(4)
	junk := make([]byte, 1<<20)
	_, _ = rand.Read(junk)
	testutil.BuildImage(t, h.cli, ref, []testutil.ImageFile{{Path: "/junk", Mode: 0o644, Body: junk}})
	first, err := h.cli.ImageInspect(t.Context(), ref)
	must.NoError(t, err)
	t.Cleanup(func() { _, _ = h.cli.ImageRemove(context.Background(), first.ID, image.RemoveOptions{Force: true}) })
	testutil.BuildImage(t, h.cli, ref, []testutil.ImageFile{{Path: "/junk2", Mode: 0o644, Body: junk[:1024]}})

	rep, err := h.ex.Cleanup(t.Context())
	must.NoError(t, err)
	must.EqOp(t, 1, rep.ContainersRemoved)
	must.EqOp(t, 1, rep.RunnersLeft)
	must.False(t, rep.VolumeRemoved)
	_, err = h.cli.ImageInspect(t.Context(), first.ID)
	must.NoError(t, err, must.Sprint("a dangling image that is not ours survives Cleanup"))
	must.SliceEmpty(t, rep.ImagesDeleted, must.Sprint("the runner image was present before: not ours to remove"))
	left := testutil.ContainersWithLabels(t, h.cli, h.labels)
	must.Len(t, 1, left)
	must.EqOp(t, busyID, left[0].ID)

	_, err = h.ex.StartRunner(t.Context(), "late", h.jit("late"))
	must.ErrorIs(t, err, dockerexec.ErrShutdown)

	must.NoError(t, h.ex.RemoveRunner(t.Context(), busyID))
	h.ex.Shutdown(t.Context())
	logs := h.logs.String()
	must.StrContains(t, logs, `msg="shut down docker runner executor"`)
	must.StrContains(t, logs, "volume_removed=true")
	must.StrContains(t, logs, "images_deleted=[]")
	testutil.AssertCensusEmpty(t, testutil.CensusScope{Docker: h.cli, DockerLabels: h.labels}, 10*time.Second)
	_, err = h.cli.VolumeInspect(t.Context(), volume)
	must.True(t, cerrdefs.IsNotFound(err))
	testutil.AssertNoContainers(t, h.cli, h.labels)
}

// TestExecutor_StartRunner_canceled cancels a start between create and
// start (a StartRunner context ending mid-way): the created container must
// be removed, not left for reconcile.
func TestExecutor_StartRunner_canceled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	api := &cancelOnCopy{DockerAPI: h.cli, cancel: cancel}
	ex, err := dockerexec.New(h.cfg, api, h.logger())
	must.NoError(t, err)
	name := runnerName("cancel", 0)
	_, err = ex.StartRunner(ctx, name, h.jit(name))
	must.Error(t, err)
	must.True(t, errors.Is(err, context.Canceled), must.Sprintf("error: %v", err))
	testutil.AssertNoContainers(t, h.cli, h.labels)
}

// cancelOnCopy cancels the start's context when the JIT config is being
// copied, i.e. after the container exists.
type cancelOnCopy struct {
	dockerexec.DockerAPI
	cancel context.CancelFunc
}

func (c *cancelOnCopy) ContainerStart(ctx context.Context, id string, opts container.StartOptions) error {
	c.cancel()
	<-ctx.Done()
	return c.DockerAPI.ContainerStart(ctx, id, opts)
}

// TestExecutor_RunReconciler_removesEnded runs the periodic reconciler: an
// ended runner disappears without anyone calling RemoveRunner, and the
// reconciler stops with its context.
func TestExecutor_RunReconciler_removesEnded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *dockerexec.Config) { c.ReconcileInterval = 100 * time.Millisecond })
	name := runnerName("periodic", 0)
	id, err := h.ex.StartRunner(t.Context(), name, h.jit(name))
	must.NoError(t, err)
	code, _ := waitExit(t, h.cli, id)
	must.EqOp(t, int64(0), code)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); h.ex.RunReconciler(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	deadline := time.Now().Add(30 * time.Second)
	for len(testutil.ContainersWithLabels(t, h.cli, h.labels)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("reconciler did not remove the ended runner container")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunReconciler did not return after its context ended")
	}
	must.StrContains(t, h.logs.String(), `msg="removed ended runner container" scale_set=dockerexec-test instance_id=`+h.cfg.InstanceID+` runner_name=`+name)
}

// TestExecutor_StartRunner_lostCreateResponse: the engine created the
// container but the caller's context ended before the answer arrived. The
// start removes the container by name, since it carries its labels.
func TestExecutor_StartRunner_lostCreateResponse(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	ex, err := dockerexec.New(h.cfg, &lostCreate{DockerAPI: h.cli, cancel: cancel}, h.logger())
	must.NoError(t, err)
	name := runnerName("lost", 0)
	_, err = ex.StartRunner(ctx, name, h.jit(name))
	must.ErrorIs(t, err, context.Canceled)
	testutil.AssertNoContainers(t, h.cli, h.labels)
}

type lostCreate struct {
	dockerexec.DockerAPI
	cancel context.CancelFunc
}

func (l *lostCreate) ContainerCreate(ctx context.Context, cfg *container.Config, hc *container.HostConfig,
	nc *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	if _, err := l.DockerAPI.ContainerCreate(ctx, cfg, hc, nc, p, name); err != nil {
		return container.CreateResponse{}, err
	}
	l.cancel()
	return container.CreateResponse{}, fmt.Errorf("reading response: %w", ctx.Err())
}

// TestExecutor_StartRunner_nameTaken: a container of someone else holds the
// runner's name. The start fails saying so, and leaves that container alone
// even when its own context ends mid-create.
func TestExecutor_StartRunner_nameTaken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	name := runnerName("taken", 0)
	foreign := map[string]string{dockerexec.LabelInstance: h.cfg.InstanceID + "-other"}
	testutil.RemoveContainersOnCleanup(t, h.cli, foreign)
	_, err := h.cli.ContainerCreate(t.Context(), &container.Config{Image: h.cfg.Image, Labels: foreign},
		&container.HostConfig{NetworkMode: "none"}, nil, nil, name)
	must.NoError(t, err)

	_, err = h.ex.StartRunner(t.Context(), name, h.jit(name))
	must.ErrorContains(t, err, "a container with this name exists")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = h.ex.StartRunner(ctx, name, h.jit(name))
	must.Error(t, err)
	must.Len(t, 1, testutil.ContainersWithLabels(t, h.cli, foreign))
	testutil.AssertNoContainers(t, h.cli, h.labels)
}
