// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

// The whole flow on a real Nomad agent: the Actions simulator → the built
// nomad-gha-scaleset (nomad backend) → Nomad → the macOS runner job of
// examples/scaleset-dispatch on the tart driver (faketart, a warm pool) and
// the Linux runner job on Nomad's docker driver (the offline fakerunner
// image). Each job file is the example's, changed only where a test must
// (see adaptMacJob and adaptLinuxJob).

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

const (
	// macImage is the image of the example's runner job and pool, seeded
	// into the agent's fake registry.
	macImage   = "ghcr.io/cirruslabs/macos-sequoia-xcode:latest"
	macJobID   = "github-runner-macos"
	linuxJobID = "github-runner-linux"
	poolName   = "macos-runner"
)

// canaryOwner owns the canary's secret in observer.secrets.
const canaryOwner = "canary"

// burstRun is one burst through the service.
type burstRun struct {
	jobs       map[string]int // label → jobs
	duration   time.Duration
	killMidway bool
}

// runFlowBurst runs one burst and checks what must hold afterwards.
func runFlowBurst(t *testing.T, fa *flowAgent, br burstRun) {
	gh, err := actionssim.Start("", actionssim.Options{
		LongPollTimeout: time.Second, SessionIdleTimeout: 3 * time.Second, RunnerPollTimeout: 2 * time.Second,
		RunnerLostTimeout: 15 * time.Second, AssignTimeout: 2 * time.Minute,
	})
	must.NoError(t, err)
	t.Cleanup(gh.Close)
	obs := newObserver(t, fa)
	cfg, _ := fa.writeServiceConfig(t, gh, flowScaleSets)
	svc := startService(t, cfg, flowPAT)
	services := []*serviceProc{svc}

	wait := func(d time.Duration, what string, cond func(actionssim.Snapshot) bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		if err := gh.WaitFor(ctx, cond); err != nil {
			s := gh.Snapshot()
			t.Fatalf("waiting for %s: %v (jobs done %d/%d)\nservice logs:\n%s", what, err,
				len(s.JobsIn(actionssim.JobCompleted)), len(s.Jobs), tailLines(services[len(services)-1].logs.String(), 60))
		}
	}
	wait(time.Minute, "sessions", func(s actionssim.Snapshot) bool {
		for _, ss := range flowScaleSets {
			if got, ok := s.ScaleSetByName(ss.name); !ok || got.SessionID == "" {
				return false
			}
		}
		return true
	})
	total := 0
	for label, n := range br.jobs {
		gh.QueueJobs(n, br.duration, label)
		total += n
	}
	if br.killMidway {
		wait(2*time.Minute, "runners busy", func(s actionssim.Snapshot) bool { return len(s.JobsIn(actionssim.JobRunning)) >= 2 })
		svc.kill(t)
		svc = startService(t, cfg, flowPAT)
		services = append(services, svc)
	}
	wait(3*time.Minute, "all jobs done", func(s actionssim.Snapshot) bool { return len(s.JobsIn(actionssim.JobCompleted)) == total })
	wait(time.Minute, "no runner registration left", func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerOffline, actionssim.RunnerIdle, actionssim.RunnerBusy)) == 0
	})
	snap := gh.Snapshot()
	// one job per runner registration (a restarted service may reuse a
	// name once its first holder is gone)
	ranBy := map[int]string{}
	for _, j := range snap.Jobs {
		must.Eq(t, actionssim.ResultSucceeded, j.Result, must.Sprintf("job %s", j.ID))
		if prev, ok := ranBy[j.RunnerID]; ok {
			t.Errorf("runner %d (%s) ran two jobs (%s, %s)", j.RunnerID, j.RunnerName, prev, j.ID)
		}
		ranBy[j.RunnerID] = j.ID
	}
	must.LessEq(t, 5, snap.PeakOnline(), must.Sprint("more runners online at once than max_runners allow"))

	// nothing left in Nomad: every dispatched child purged
	c := fa.agent.API()
	q := &api.QueryOptions{Namespace: runnerNS}
	eventuallyT(t, 2*time.Minute, "every dispatched job purged", func() bool {
		stubs, _, err := c.Jobs().List(q)
		if err != nil {
			return false
		}
		for _, s := range stubs {
			if s.ParentID != "" {
				return false
			}
		}
		return true
	})
	obs.close()
	// no VM of a task, the warm pool at its size; no container
	eventuallyT(t, time.Minute, "no task VM left", func() bool { return len(taskVMs(fa.agent.TartHome)) == 0 })
	must.LessEq(t, 1, len(poolVMs(fa.agent.TartHome)))
	eventuallyT(t, time.Minute, "no runner container left", func() bool { return len(fa.runnerContainers(t.Context())) == 0 })

	obs.mu.Lock()
	defer obs.mu.Unlock()
	must.SliceEmpty(t, obs.errs)
	// the observer saw the runners (so the checks below are not vacuous)
	must.GreaterEq(t, total, len(obs.secrets)-1, must.Sprint("dispatched children seen (and the canary)"))
	// (a runner claiming the warm VM runs in it under its pool name: task
	// VMs are only cold starts, which a burst may not need)
	diag := must.Sprintf("%d samples, %d task VMs, %d containers at most", obs.samples, obs.taskVMs, obs.contSeen)
	must.Positive(t, obs.contSeen, diag)
	must.SliceEmpty(t, obs.dupes, must.Sprint("runner names with two live dispatched jobs"))
	must.Eq(t, map[string]bool{"cmdline": true, "environ": true}, obs.canaryIn, must.Sprint("the process scan saw the canary"))
	must.SliceEmpty(t, obs.leaks, must.Sprint("the JIT config in a process's argv or environment"))

	// the JIT config in no agent log, service log or task event
	var secrets []string
	for owner, forms := range obs.secrets {
		if owner != canaryOwner {
			secrets = append(secrets, forms...)
		}
	}
	logs := fa.agent.Logs()
	for _, s := range services {
		logs += s.logs.String()
	}
	events, claimed := allocEvents(t, fa)
	// the warm pool served runners, and no VM a runner ran in is left
	must.SliceNotEmpty(t, claimed, must.Sprint("no runner claimed the warm VM"))
	left := poolVMs(fa.agent.TartHome)
	for _, vm := range claimed {
		must.SliceNotContains(t, left, vm, must.Sprintf("VM %s a runner ran in is still there", vm))
	}
	for _, s := range secrets {
		must.StrNotContains(t, logs, s)
		must.StrNotContains(t, events, s)
	}
	must.StrNotContains(t, logs, flowPAT)
	if !br.killMidway {
		svc.stop(t)
	} else {
		must.StrContains(t, svc.logs.String(), "adopted dispatched runner job")
		svc.stop(t)
	}
}

var claimedVM = regexp.MustCompile(`Claimed warm VM (\S+)`)

// allocEvents is every allocation of the runners' namespace with its task
// events, as JSON (Nomad 1.6 keeps a purged job's allocations until GC),
// and the warm VMs the tasks claimed.
func allocEvents(t *testing.T, fa *flowAgent) (string, []string) {
	t.Helper()
	stubs, _, err := fa.agent.API().Allocations().List(&api.QueryOptions{Namespace: runnerNS})
	must.NoError(t, err)
	must.NotEq(t, 0, len(stubs))
	var b strings.Builder
	var claimed []string
	for _, s := range stubs {
		a, _, err := fa.agent.API().Allocations().Info(s.ID, &api.QueryOptions{Namespace: runnerNS})
		if err != nil {
			continue
		}
		raw, err := json.Marshal(a.TaskStates)
		must.NoError(t, err)
		b.Write(raw)
		for _, ts := range a.TaskStates {
			for _, e := range ts.Events {
				if m := claimedVM.FindStringSubmatch(e.DisplayMessage); m != nil {
					claimed = append(claimed, m[1])
				}
			}
		}
	}
	return b.String(), claimed
}

func eventuallyT(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNomadE2E_flow runs a burst of macOS and Linux jobs through the built
// service and a real agent, then the same burst with the service SIGKILLed
// midway and started again.
func TestNomadE2E_flow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the service, the driver, faketart and fakerunner and runs a real agent")
	}
	fa := startFlowAgent(t, nil, true)
	burst := map[string]int{"macos": 3, "linux": 4}
	t.Run("burst", func(t *testing.T) {
		runFlowBurst(t, fa, burstRun{jobs: burst, duration: time.Second})
	})
	t.Run("sigkill midway", func(t *testing.T) {
		runFlowBurst(t, fa, burstRun{jobs: burst, duration: 2 * time.Second, killMidway: true})
	})
}
