// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// helperEnv makes the test binary act as a service process that starts
// runners and is then killed (see runKillHelper).
const helperEnv = "DOCKEREXEC_KILL_HELPER"

// killPlan is what the helper process starts: runners that keep running,
// runners that exit at once, and runners whose container is created but
// whose start never returns (killed between create and start).
type killPlan struct {
	Config dockerexec.Config
	Hold   []string
	Quick  []string
	Stuck  []string
}

// TestExecutor_Reconcile_afterKill starts runners from a separate process,
// SIGKILLs it mid-way, and checks that a new executor for the same instance
// finds every container: it removes the ended and the never-started ones,
// lists the running ones, and after removing those nothing is left.
func TestExecutor_Reconcile_afterKill(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	plan := killPlan{Config: h.cfg}
	for i := range 3 {
		plan.Hold = append(plan.Hold, runnerName("hold", i))
		plan.Quick = append(plan.Quick, runnerName("quick", i))
	}
	plan.Stuck = []string{runnerName("stuck", 0), runnerName("stuck", 1)}
	planJSON, err := json.Marshal(plan)
	must.NoError(t, err)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(planJSON))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	must.NoError(t, err)
	must.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Wait until every container exists and the non-stuck ones started,
	// then kill the "service" with the stuck starts still in flight.
	ids := map[string]string{}
	want := len(plan.Hold) + len(plan.Quick) + len(plan.Stuck)
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(2 * time.Minute)
	for len(ids) < want {
		select {
		case l, ok := <-lines:
			must.True(t, ok, must.Sprintf("helper exited early; got %v", ids))
			if f := strings.Fields(l); len(f) == 3 && (f[0] == "started" || f[0] == "created") {
				ids[f[1]] = f[2]
			}
		case <-deadline:
			t.Fatalf("helper did not start its runners in time; got %v", ids)
		}
	}
	must.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	for range lines { // drain so the reader goroutine ends
	}

	for _, name := range plan.Quick {
		code, _ := waitExit(t, h.cli, ids[name])
		must.EqOp(t, int64(0), code)
	}
	runners, err := h.ex.Runners(t.Context())
	must.NoError(t, err)
	must.Len(t, want, runners)
	states := map[string]container.ContainerState{}
	for _, r := range runners {
		states[r.Name] = r.State
		must.EqOp(t, ids[r.Name], r.ContainerID)
	}
	for _, n := range plan.Hold {
		must.EqOp(t, container.StateRunning, states[n])
	}
	for _, n := range plan.Quick {
		must.EqOp(t, container.StateExited, states[n])
	}
	for _, n := range plan.Stuck {
		must.EqOp(t, container.StateCreated, states[n])
	}

	rep, err := h.ex.Reconcile(t.Context())
	must.NoError(t, err)
	must.Len(t, len(plan.Quick)+len(plan.Stuck), rep.Removed)
	must.Len(t, len(plan.Hold), rep.Remaining)
	for _, r := range rep.Remaining {
		must.SliceContains(t, plan.Hold, r.Name)
		must.NoError(t, h.ex.RemoveRunner(t.Context(), r.ContainerID))
	}
	testutil.AssertNoContainers(t, h.cli, h.labels)
}

// runKillHelper is the helper process: it starts the plan's runners and
// prints "started <name> <id>" or "created <name> <id>" for each, then
// waits to be killed.
func runKillHelper() int {
	var plan killPlan
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &plan); err != nil {
		fmt.Fprintln(os.Stderr, "helper: bad plan:", err)
		return 2
	}
	cli, err := dockerexec.NewClientFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	executor := func(env map[string]string, api dockerexec.DockerAPI) *dockerexec.Executor {
		cfg := plan.Config
		cfg.Env = env
		ex, err := dockerexec.New(cfg, api, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		return ex
	}
	hold := executor(map[string]string{"FAKERUNNER_HOLD": "5m"}, cli)
	quick := executor(nil, cli)
	stuck := executor(nil, &stuckStart{DockerAPI: cli, created: func(name, id string) { say("created %s %s", name, id) }})

	start := func(ex *dockerexec.Executor, name string, report bool) {
		id, err := ex.StartRunner(context.Background(), name, fakeJIT(name, "helper-secret"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper: start:", err)
			os.Exit(2)
		}
		if report {
			say("started %s %s", name, id)
		}
	}
	for _, n := range plan.Hold {
		go start(hold, n, true)
	}
	for _, n := range plan.Quick {
		go start(quick, n, true)
	}
	for _, n := range plan.Stuck {
		go start(stuck, n, false)
	}
	// Killed by the test; end on our own only if it forgets.
	<-time.After(5 * time.Minute)
	return 1
}

// stuckStart reports each created container and never returns from start,
// like a service killed between the two calls.
type stuckStart struct {
	dockerexec.DockerAPI
	created func(name, id string)
}

func (s *stuckStart) ContainerCreate(ctx context.Context, cfg *container.Config, hc *container.HostConfig,
	nc *network.NetworkingConfig, p *ocispec.Platform, name string) (container.CreateResponse, error) {
	resp, err := s.DockerAPI.ContainerCreate(ctx, cfg, hc, nc, p, name)
	if err == nil {
		s.created(name, resp.ID)
	}
	return resp, err
}

func (s *stuckStart) ContainerStart(ctx context.Context, _ string, _ container.StartOptions) error {
	<-ctx.Done()
	return ctx.Err()
}
