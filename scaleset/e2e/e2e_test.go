// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

var backends = []struct {
	name string
	env  func(t *testing.T) backendEnv
}{
	{"docker", dockerEnv},
	{"tart", tartEnv},
}

// queueBurst queues n jobs of 100-300 ms.
func queueBurst(sim *actionssim.Server, label string, n int) {
	for i := range n {
		sim.QueueJob(actionssim.JobSpec{Labels: []string{label}, Duration: time.Duration(100+(i*37)%200) * time.Millisecond})
	}
}

func TestE2E_burst50Max10(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			env := b.env(t)
			sim := startSim(t)
			addr := testutil.FreeLoopbackAddr(t)
			cfg := writeConfig(t, sim.OrgConfigURL("acme"), addr, scaleSetHCL{name: "burst", backend: env.kind, max: 10, backendBlock: env.block(nil)})
			svc := startService(t, cfg, addr)
			waitFor(t, sim, 30*time.Second, "session", actionssim.HasSession("burst"))

			queueBurst(sim, "burst", 50)
			waitFor(t, sim, 3*time.Minute, "50 jobs done", actionssim.JobsCompleted(50))
			waitFor(t, sim, 30*time.Second, "no registrations left", func(s actionssim.Snapshot) bool { return len(liveRunners(s)) == 0 })
			eventually(t, 30*time.Second, "backend empty", func() bool { return env.leftovers(t) == 0 })

			snap := sim.Snapshot()
			for _, j := range snap.Jobs {
				must.Eq(t, actionssim.ResultSucceeded, j.Result, must.Sprintf("job %+v", j))
			}
			must.LessEq(t, 10, snap.PeakOnline(), must.Sprint("never more than max_runners runners at once"))
			must.GreaterEq(t, 50, len(snap.Runners))

			body := svc.metrics(t)
			must.StrContains(t, body, `gha_completed_jobs_total{`)
			// Split by start path (warm, resumed, cold; unknown for backends that do not say).
			must.StrContains(t, body, `nomad_gha_scaleset_runner_start_duration_seconds_count{backend="`+env.kind+`",name="burst",path="`)
			svc.stop(t)
			ss, _ := sim.Snapshot().ScaleSetByName("burst")
			must.Eq(t, "", ss.SessionID, must.Sprint("session deleted on SIGTERM"))
			must.StrNotContains(t, svc.logs.String(), testPAT)
		})
	}
}

func TestE2E_sigkillAndRestart(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			env := b.env(t)
			sim := startSim(t)
			addr := testutil.FreeLoopbackAddr(t)
			cfg := writeConfig(t, sim.OrgConfigURL("acme"), addr, scaleSetHCL{name: "crash", backend: env.kind, max: 5, backendBlock: env.block(nil)})
			first := startService(t, cfg, addr)
			heldPeak := sampleHeld(t, env)
			waitFor(t, sim, 30*time.Second, "session", actionssim.HasSession("crash"))
			queueBurst(sim, "crash", 30)
			waitFor(t, sim, time.Minute, "a third of the burst done", func(s actionssim.Snapshot) bool {
				return len(s.JobsIn(actionssim.JobCompleted)) >= 10
			})
			first.kill(t)

			// The killed process's session is still held: the new one
			// retries the 409 until the service expires it, then adopts or
			// cleans up what the first left.
			second := startService(t, cfg, addr)
			waitFor(t, sim, 3*time.Minute, "30 jobs done after the restart", actionssim.JobsCompleted(30))
			waitFor(t, sim, 30*time.Second, "no registrations left", func(s actionssim.Snapshot) bool { return len(liveRunners(s)) == 0 })
			eventually(t, 30*time.Second, "backend empty", func() bool { return env.leftovers(t) == 0 })

			snap := sim.Snapshot()
			// Runners on the backend, not registrations: after a crash GitHub
			// may hold a registration whose runner is gone (killed with its
			// tart VM, or a JIT generated just before the kill) until it
			// fails that job; the restarted service cannot remove a
			// registration GitHub says is busy.
			must.LessEq(t, 5, heldPeak(), must.Sprint("never more than max_runners on the backend, across the restart"))
			names := map[string]int{}
			for _, r := range snap.Runners {
				if r.DeletedAt.IsZero() {
					names[r.Name]++
				}
			}
			for n, c := range names {
				must.Eq(t, 1, c, must.Sprintf("runner name %s registered twice at once", n))
			}
			must.StrContains(t, second.logs.String(), "another listener holds the message session")
			second.stop(t)
		})
	}
}

func TestE2E_github5xxBursts(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			env := b.env(t)
			sim := startSim(t)
			addr := testutil.FreeLoopbackAddr(t)
			cfg := writeConfig(t, sim.OrgConfigURL("acme"), addr, scaleSetHCL{name: "flaky", backend: env.kind, max: 4, backendBlock: env.block(nil)})
			svc := startService(t, cfg, addr)
			waitFor(t, sim, 30*time.Second, "session", actionssim.HasSession("flaky"))
			queueBurst(sim, "flaky", 12)
			// two outages of the Actions service during the burst: short ones
			// the client's retries absorb, and one that outlasts them and
			// makes the listener restart
			sim.FailNext(3, http.StatusServiceUnavailable, actionssim.EndpointJITConfig, actionssim.EndpointRunners)
			waitFor(t, sim, time.Minute, "some jobs done", func(s actionssim.Snapshot) bool {
				return len(s.JobsIn(actionssim.JobCompleted)) >= 3
			})
			// The long outage (longer than the client's ~1.5 s of retries) runs
			// on one backend only, to keep the suite short: the recovery path
			// is the same for both and the service tests cover it too.
			long := env.kind == "docker"
			if long {
				sim.FailFor(5*time.Second, http.StatusBadGateway, actionssim.EndpointGetMessage, actionssim.EndpointDeleteMessage, actionssim.EndpointJITConfig)
			} else {
				sim.FailNext(4, http.StatusBadGateway, actionssim.EndpointGetMessage, actionssim.EndpointJITConfig)
			}
			waitFor(t, sim, 3*time.Minute, "12 jobs done", actionssim.JobsCompleted(12))
			waitFor(t, sim, 30*time.Second, "no registrations left", func(s actionssim.Snapshot) bool { return len(liveRunners(s)) == 0 })
			eventually(t, 30*time.Second, "backend empty", func() bool { return env.leftovers(t) == 0 })
			if long {
				must.StrContains(t, svc.logs.String(), "listener stopped, restarting")
				must.StrContains(t, svc.metrics(t), `nomad_gha_scaleset_listener_restarts_total{name="flaky"}`)
			}
			must.StrNotContains(t, svc.logs.String(), testPAT)
			svc.stop(t)
		})
	}
}

func TestE2E_runnerNeverOnline(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			env := b.env(t)
			// docker: a runner without network; tart: a guest command that
			// never starts a runner
			stuck := []string{"/bin/fakerunner", "--connect-timeout", "1h"}
			if env.kind == "tart" {
				stuck = []string{"/bin/sleep", "3600"}
			}
			sim := startSim(t)
			addr := testutil.FreeLoopbackAddr(t)
			cfg := writeConfig(t, sim.OrgConfigURL("acme"), addr, scaleSetHCL{
				name: "stuck", backend: env.kind, max: 1, onlineTimeout: "2s",
				removeIdleOnShutdown: true, backendBlock: env.block(stuck),
			})
			svc := startService(t, cfg, addr)
			waitFor(t, sim, 30*time.Second, "session", actionssim.HasSession("stuck"))
			sim.QueueJobs(1, 100*time.Millisecond, "stuck")
			// removed on GitHub (registration deleted) and replaced, with backoff
			waitFor(t, sim, time.Minute, "two stuck registrations removed", func(s actionssim.Snapshot) bool {
				return len(s.RunnersIn(actionssim.RunnerDeleted)) >= 2
			})
			eventually(t, 20*time.Second, "never_online in metrics", func() bool {
				return strings.Contains(svc.metrics(t), `reason="never_online"`)
			})
			must.LessEq(t, 1, env.leftovers(t), must.Sprint("stuck runners are removed from the backend too"))
			regs := len(sim.Snapshot().Runners)
			must.Less(t, 12, regs, must.Sprint("backoff, not a hot loop"))
			svc.stop(t)
			must.Eq(t, 0, env.leftovers(t))
			must.Eq(t, 0, len(liveRunners(sim.Snapshot())))
		})
	}
}
