// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/dist"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/sim/nomadsim"
)

// buildServiceImage builds the service image from deploy/container with the
// same context `make image` sends, on the test engine, and removes it when
// the test ends.
func buildServiceImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	if _, err := os.Stat(dist.DefaultCACerts); err != nil {
		if testutil.InCI() {
			t.Fatalf("no CA bundle at %s (apt-get install ca-certificates)", dist.DefaultCACerts)
		}
		t.Skipf("no CA bundle at %s", dist.DefaultCACerts)
	}
	var ctxTar bytes.Buffer
	must.NoError(t, dist.ImageContext(&ctxTar, dist.ImageOptions{
		Root: testutil.RepoRoot(t), Binary: testutil.BuildBinary(t, "./cmd/nomad-gha-scaleset"),
	}))
	tag := fmt.Sprintf("nomad-tart-scaleset-image-test:p%d-%d", os.Getpid(), time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{
		Tags: []string{tag}, Remove: true, ForceRemove: true, Version: build.BuilderV1,
	})
	must.NoError(t, err)
	out, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	must.NoError(t, err)
	t.Cleanup(func() { testutil.RemoveImage(t, cli, tag) })
	must.StrNotContains(t, string(out), `"errorDetail"`, must.Sprint(string(out)))
	return tag
}

// TestContainer_scratchImageProvisionsRunners builds the FROM scratch image
// and runs it as the Nomad job example does (run --config, as the image's
// non-root user), with --network host against the Actions simulator and
// the Nomad API double on loopback. The double runs each dispatched runner
// job as a fakerunner process, so the container provisions real (fake)
// runners end to end: jobs complete, /healthz and /metrics answer.
func TestContainer_scratchImageProvisionsRunners(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image and runs a container")
	}
	cli := testutil.DockerClient(t)
	image := buildServiceImage(t, cli)

	ictx, icancel := context.WithTimeout(context.Background(), time.Minute)
	defer icancel()
	inspect, err := cli.ImageInspect(ictx, image)
	must.NoError(t, err)
	must.Eq(t, fmt.Sprintf("%d:%d", dist.ImageUID, dist.ImageUID), inspect.Config.User, must.Sprint("the image runs as a non-root user"))
	must.Eq(t, []string{dist.ImageBinary}, inspect.Config.Entrypoint)

	const pat = "ghp_CONTAINERTESTSECRET0123456789"
	gh, err := actionssim.Start("", actionssim.Options{
		PersonalAccessTokens: []string{pat},
		LongPollTimeout:      300 * time.Millisecond, SessionIdleTimeout: 2 * time.Second, RunnerPollTimeout: time.Second,
	})
	must.NoError(t, err)
	t.Cleanup(gh.Close)

	runnerLogs := &testutil.SyncBuffer{}
	nomad := nomadsim.New(nomadsim.WithTaskRunner(&nomadsim.ProcessRunner{
		Dir: t.TempDir(), Command: testutil.BuildBinary(t, "./sim/cmd/fakerunner"),
		Args:   []string{"--jitconfig-file", "${NOMAD_TASK_DIR}/jitconfig", "--connect-timeout", "10s"},
		Stdout: runnerLogs, Stderr: runnerLogs, KillTimeout: 2 * time.Second,
	}))
	nomadAddr := nomad.Start()
	t.Cleanup(nomad.Close)
	s := func(v string) *string { return &v }
	must.NoError(t, nomad.RegisterJob(&api.Job{
		ID: s("github-runner"), Type: s("batch"),
		ParameterizedJob: &api.ParameterizedJobConfig{Payload: "required", MetaRequired: []string{"runner_name", "runner_scale_set_name"}},
		TaskGroups: []*api.TaskGroup{{Name: s("runner"), Tasks: []*api.Task{{
			Name: "runner", Driver: "docker", DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"},
		}}}},
	}))

	listen := testutil.FreeLoopbackAddr(t)
	// The image's user must read the config: a world-readable file in a
	// world-traversable directory (t.TempDir is 0700).
	dir, err := os.MkdirTemp("", "nomad-tart-image-test-")
	must.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	must.NoError(t, os.Chmod(dir, 0o755))
	cfgPath := filepath.Join(dir, "scaleset.hcl")
	must.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, `
github_config_url = %q
listen_address    = %q
shutdown_timeout  = "10s"
scale_set "linux" {
  labels                = ["linux"]
  max_runners           = 2
  reconcile_interval    = "200ms"
  start_backoff_min     = "100ms"
  runner_online_timeout = "30s"
  backend               = "nomad"
  nomad {
    address            = %q
    job_id             = "github-runner"
    purge_grace_period = "2s"
  }
}
`, gh.OrgConfigURL("acme"), listen, nomadAddr), 0o644))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := fmt.Sprintf("nomad-tart-scaleset-image-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	created, err := cli.ContainerCreate(ctx, &container.Config{
		Image:  image,
		Cmd:    []string{"run", "--config", "/local/scaleset.hcl"},
		Env:    []string{"NOMAD_GHA_SCALESET_GITHUB_TOKEN=" + pat},
		Labels: map[string]string{"nomad-tart-test": name},
	}, &container.HostConfig{
		NetworkMode: "host",
		Binds:       []string{cfgPath + ":/local/scaleset.hcl:ro"},
	}, nil, nil, name)
	must.NoError(t, err)
	t.Cleanup(func() {
		rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
		defer rcancel()
		_ = cli.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true})
	})
	must.NoError(t, cli.ContainerStart(ctx, created.ID, container.StartOptions{}))
	logs := func() string {
		rc, err := cli.ContainerLogs(context.Background(), created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
		if err != nil {
			return err.Error()
		}
		defer rc.Close()
		var b bytes.Buffer
		_, _ = stdcopy.StdCopy(&b, &b, rc)
		return b.String()
	}

	wait := func(d time.Duration, what string, cond func(actionssim.Snapshot) bool) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, d)
		defer wcancel()
		if err := gh.WaitFor(wctx, cond); err != nil {
			t.Fatalf("waiting for %s: %v\ncontainer logs:\n%s\nrunner logs:\n%s", what, err, logs(), runnerLogs.String())
		}
	}
	wait(60*time.Second, "the container's message session", func(s actionssim.Snapshot) bool {
		ss, ok := s.ScaleSetByName("linux")
		return ok && ss.SessionID != ""
	})
	must.Eq(t, http.StatusOK, httpGet(t, "http://"+listen+"/healthz").code)

	const jobs = 4
	gh.QueueJobs(jobs, 50*time.Millisecond, "linux")
	wait(120*time.Second, "all jobs done", func(s actionssim.Snapshot) bool { return len(s.JobsIn(actionssim.JobCompleted)) == jobs })
	for _, j := range gh.Jobs() {
		must.Eq(t, actionssim.ResultSucceeded, j.Result)
	}

	m := httpGet(t, "http://"+listen+"/metrics")
	must.Eq(t, http.StatusOK, m.code)
	must.StrContains(t, m.body, `gha_completed_jobs_total{`)
	must.StrContains(t, m.body, `nomad_gha_scaleset_runner_start_duration_seconds_count{backend="nomad",name="linux",path="unknown"}`)

	// A graceful stop: exit 0 and the message session deleted.
	timeout := 30
	must.NoError(t, cli.ContainerStop(ctx, created.ID, container.StopOptions{Timeout: &timeout}))
	st, err := cli.ContainerInspect(ctx, created.ID)
	must.NoError(t, err)
	must.Eq(t, 0, st.State.ExitCode, must.Sprint(logs()))
	ss, ok := gh.Snapshot().ScaleSetByName("linux")
	must.True(t, ok)
	must.Eq(t, "", ss.SessionID, must.Sprint("the session outlived the container"))

	out := logs()
	must.StrNotContains(t, out, pat, must.Sprint("the token leaked into the logs"))
	// JSON logs (the image's default format).
	first, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	var rec map[string]any
	must.NoError(t, json.Unmarshal([]byte(first), &rec), must.Sprint(first))
}

type httpResult struct {
	code int
	body string
}

func httpGet(t *testing.T, url string) httpResult {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	must.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must.NoError(t, err)
	return httpResult{resp.StatusCode, string(b)}
}
