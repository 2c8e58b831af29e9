// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// Issue 11 reproductions: a second instance on the same scale set, and a
// shutdown by signal.

// TestE2E_secondInstanceIsReadOnly: instance A holds the session with
// min_runners = 2; instance B (another docker instance_id, same scale set)
// waits for the session and must neither generate JIT configs nor delete
// A's registrations. Before the fix B did both on its first pass and A's
// idle runners failed.
func TestE2E_secondInstanceIsReadOnly(t *testing.T) {
	env := dockerEnv(t)
	sim := startSim(t)
	addrA, addrB := testutil.FreeLoopbackAddr(t), testutil.FreeLoopbackAddr(t)
	blockA := env.block(nil)
	cfgA := writeConfig(t, sim.OrgConfigURL("acme"), addrA, scaleSetHCL{name: "owner", backend: env.kind, min: 2, max: 4, backendBlock: blockA, removeIdleOnShutdown: true})
	a := startService(t, cfgA, addrA)
	waitFor(t, sim, 30*time.Second, "A's two idle runners", func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerIdle)) == 2
	})
	before := len(sim.Snapshot().Runners)

	// B: the same scale set, its own backend instance.
	instB := "e2e-b-" + randomID()
	blockB := replaceInstance(t, blockA, instB)
	testutil.RemoveContainersOnCleanup(t, testutil.DockerClient(t), map[string]string{dockerexec.LabelInstance: instB})
	cfgB := writeConfig(t, sim.OrgConfigURL("acme"), addrB, scaleSetHCL{name: "owner", backend: env.kind, min: 2, max: 4, backendBlock: blockB, removeIdleOnShutdown: true})
	b := startService(t, cfgB, addrB)
	// Two conflicts seen means B has been running its reconcile loop
	// (500 ms interval) for at least one retry delay (5 s): on the old code
	// it had generated JIT configs and removed A's runners by then.
	eventually(t, 30*time.Second, "B retried the session twice", func() bool {
		return strings.Contains(b.metrics(t), `nomad_gha_scaleset_session_conflicts_total{name="owner"} 2`)
	})
	snap := sim.Snapshot()
	must.Eq(t, before, len(snap.Runners), must.Sprint("B generated no JIT config"))
	must.Eq(t, 0, len(snap.RunnersIn(actionssim.RunnerDeleted)), must.Sprint("B removed none of A's registrations"))
	must.Eq(t, 2, len(snap.RunnersIn(actionssim.RunnerIdle)))
	must.StrNotContains(t, b.logs.String(), `msg="started runner"`)
	must.StrNotContains(t, b.logs.String(), `msg="removed runner"`)

	// and it says so: log, /readyz, metrics
	must.StrContains(t, b.logs.String(), "standing by, read-only")
	code, body := b.readyz(t)
	must.Eq(t, http.StatusServiceUnavailable, code)
	must.StrContains(t, body, "standby")
	must.StrContains(t, b.metrics(t), `nomad_gha_scaleset_session_owner{name="owner"} 0`)
	must.StrContains(t, a.metrics(t), `nomad_gha_scaleset_session_owner{name="owner"} 1`)

	// A leaves; B takes the session over by itself and keeps min_runners.
	a.stop(t)
	eventually(t, 60*time.Second, "B ready", func() bool { c, _ := b.readyz(t); return c == http.StatusOK })
	waitFor(t, sim, 60*time.Second, "B's two idle runners", func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerIdle)) == 2
	})
	must.StrContains(t, b.metrics(t), `nomad_gha_scaleset_session_owner{name="owner"} 1`)
	b.stop(t)
	testutil.AssertNoContainers(t, testutil.DockerClient(t), map[string]string{dockerexec.LabelInstance: instB})
}

func replaceInstance(t *testing.T, block, instance string) string {
	t.Helper()
	i := strings.Index(block, "instance_id")
	must.Positive(t, i)
	end := strings.Index(block[i:], "\n")
	if end < 0 {
		end = len(block) - i
	}
	return block[:i] + `instance_id         = "` + instance + `"` + block[i+end:]
}

// TestE2E_signalShutdownLogsNoError: SIGINT and SIGTERM while the listener
// long-polls end the service without an ERROR line (the HTTP client logged
// "request failed ... interrupt signal received" at ERROR).
func TestE2E_signalShutdownLogsNoError(t *testing.T) {
	env := tartEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			sim := startSim(t)
			addr := testutil.FreeLoopbackAddr(t)
			cfg := writeConfig(t, sim.OrgConfigURL("acme"), addr, scaleSetHCL{name: "sig", backend: env.kind, max: 2, backendBlock: env.block(nil)})
			svc := startService(t, cfg, addr)
			waitFor(t, sim, 30*time.Second, "session", actionssim.HasSession("sig"))
			// let the listener enter its long poll
			eventually(t, 30*time.Second, "long poll", func() bool {
				return strings.Contains(svc.logs.String(), "Getting next message")
			})
			svc.signal(sig)
			select {
			case err := <-svc.done:
				svc.done <- err
				must.NoError(t, err)
			case <-time.After(40 * time.Second):
				t.Fatal("service did not stop")
			}
			for _, line := range strings.Split(svc.logs.String(), "\n") {
				must.StrNotContains(t, line, "level=ERROR")
			}
		})
	}
}
