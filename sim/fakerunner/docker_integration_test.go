// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

//go:build integration

// Integration test: the static fakerunner binary runs inside an offline-built
// Docker image against the simulator on the host. Run it with a Docker
// engine reachable through DOCKER_HOST:
//
//	eval "$(scripts/test-dockerd.sh start)"
//	go test -tags integration -race -count=1 ./sim/fakerunner/
//
// Without an engine it skips (fails under CI=true).

package fakerunner_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

func TestFakeRunner_inDockerContainer(t *testing.T) {
	cli := testutil.DockerClient(t)
	bin := testutil.BuildBinary(t, "./sim/cmd/fakerunner")
	image := testutil.BuildImageFromBinary(t, cli, bin, "actionssim-fakerunner-test")
	labels := map[string]string{"actionssim-test": t.Name()}
	testutil.RemoveContainersOnCleanup(t, cli, labels)

	srv, _, _, blob := setup(t)
	job := srv.QueueJob(actionssim.JobSpec{Duration: 200 * time.Millisecond})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	created, err := cli.ContainerCreate(ctx, &container.Config{
		Image:  image,
		User:   "1001:1001",
		Env:    []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + blob},
		Labels: labels,
	}, &container.HostConfig{NetworkMode: "host"}, nil, nil, "")
	must.NoError(t, err)
	t.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	waitC, errC := cli.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	must.NoError(t, cli.ContainerStart(ctx, created.ID, container.StartOptions{}))
	select {
	case res := <-waitC:
		if res.StatusCode != 0 {
			logs, _ := cli.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
			var out []byte
			if logs != nil {
				out, _ = io.ReadAll(logs)
				logs.Close()
			}
			t.Fatalf("fakerunner exited %d:\n%s", res.StatusCode, out)
		}
	case err := <-errC:
		t.Fatalf("waiting for container: %v", err)
	}
	got := srv.Jobs()[0]
	must.Eq(t, job.ID, got.ID)
	must.Eq(t, actionssim.JobCompleted, got.State)
	must.Eq(t, actionssim.ResultSucceeded, got.Result)
}
