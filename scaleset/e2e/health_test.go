// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package e2e

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// Issue 11's outage reproductions: health drives capacity, a lost session
// is recreated, gone runners are removed locally.

// socketProxy forwards a unix socket to the Docker engine's and can cut
// the engine off (every connection closed, new ones refused) and restore
// it, without touching the shared engine.
type socketProxy struct {
	path, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newSocketProxy(t *testing.T) *socketProxy {
	t.Helper()
	host := os.Getenv("DOCKER_HOST")
	target, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		t.Skip("DOCKER_HOST is not a unix socket")
	}
	// unix socket paths are short: not under t.TempDir's long name
	dir, err := os.MkdirTemp("", "e2e-proxy")
	must.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	p := &socketProxy{path: filepath.Join(dir, "docker.sock"), target: target, conns: map[net.Conn]bool{}}
	p.restore(t)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *socketProxy) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("unix", p.path)
	must.NoError(t, err)
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *socketProxy) forward(c net.Conn) {
	up, err := net.Dial("unix", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut meanwhile
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
	wg.Go(func() { _, _ = io.Copy(c, up); _ = c.Close() })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// cut closes the listener and every forwarded connection.
func (p *socketProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	_ = os.Remove(p.path)
}

// TestE2E_backendUnreachableOffersNoCapacity: with the Docker engine
// unreachable the service is not ready and offers GitHub no capacity, so
// a queued job is not assigned to it; when the engine is back it recovers
// by itself and runs the job. Before, /readyz said ready and jobs kept
// being assigned.
func TestE2E_backendUnreachableOffersNoCapacity(t *testing.T) {
	env := dockerEnv(t)
	proxy := newSocketProxy(t)
	sim := startSim(t)
	addr := testutil.FreeLoopbackAddr(t)
	block := strings.Replace(env.block(nil), "docker {", "docker {\n    docker_host = \"unix://"+proxy.path+"\"", 1)
	cfg := writeConfig(t, sim.OrgConfigURL("acme"), addr, scaleSetHCL{name: "health", backend: env.kind, max: 2, backendBlock: block})
	svc := startService(t, cfg, addr)
	waitFor(t, sim, 30*time.Second, "session with capacity 2", func(s actionssim.Snapshot) bool {
		ss, ok := s.ScaleSetByName("health")
		return ok && ss.SessionID != "" && ss.MaxCapacity == 2
	})
	eventually(t, 30*time.Second, "ready", func() bool { c, _ := svc.readyz(t); return c == http.StatusOK })

	proxy.cut()
	waitFor(t, sim, 30*time.Second, "capacity 0 while the engine is unreachable", func(s actionssim.Snapshot) bool {
		ss, _ := s.ScaleSetByName("health")
		return ss.MaxCapacity == 0
	})
	code, body := svc.readyz(t)
	must.Eq(t, http.StatusServiceUnavailable, code)
	must.StrContains(t, body, "backend failing")
	must.StrContains(t, svc.metrics(t), `nomad_gha_scaleset_backend_healthy{backend="docker",name="health"} 0`)

	job := sim.QueueJob(actionssim.JobSpec{Labels: []string{"health"}, Duration: 100 * time.Millisecond})
	// a few long polls (1 s each) later the job is still not assigned here
	polls := sim.RequestCount(actionssim.EndpointGetMessage)
	eventually(t, 30*time.Second, "three more polls", func() bool { return sim.RequestCount(actionssim.EndpointGetMessage) >= polls+3 })
	for _, j := range sim.Snapshot().Jobs {
		if j.ID == job.ID {
			must.Eq(t, actionssim.JobQueued, j.State, must.Sprintf("job %+v was offered to a scale set whose backend was down", j))
		}
	}

	proxy.restore(t)
	waitFor(t, sim, 60*time.Second, "the job done after recovery", actionssim.JobsCompleted(1))
	eventually(t, 30*time.Second, "ready again", func() bool { c, _ := svc.readyz(t); return c == http.StatusOK })
	must.StrContains(t, svc.logs.String(), "backend healthy again")
	eventually(t, 30*time.Second, "backend empty", func() bool { return env.leftovers(t) == 0 })
	svc.stop(t)
}

// TestE2E_actionsServiceRestart: the Actions service restarts and forgets
// every session and token while jobs run. The service recreates its
// session (before, it retried the 401 every 30 s forever and /readyz
// stayed 503), finishes the work and leaves nothing behind.
func TestE2E_actionsServiceRestart(t *testing.T) {
	env := tartEnv(t)
	sim := startSim(t)
	addr := testutil.FreeLoopbackAddr(t)
	cfg := writeConfig(t, sim.OrgConfigURL("acme"), addr, scaleSetHCL{name: "amnesia", backend: env.kind, max: 3, backendBlock: env.block(nil)})
	svc := startService(t, cfg, addr)
	waitFor(t, sim, 30*time.Second, "session", actionssim.HasSession("amnesia"))
	sim.QueueJobs(3, 2*time.Second, "amnesia")
	waitFor(t, sim, 60*time.Second, "jobs running", actionssim.JobsInState(actionssim.JobRunning, 3))

	sim.Restart()
	waitFor(t, sim, 30*time.Second, "a new session", actionssim.HasSession("amnesia"))
	eventually(t, 30*time.Second, "ready again", func() bool { c, _ := svc.readyz(t); return c == http.StatusOK })
	sim.QueueJobs(2, 100*time.Millisecond, "amnesia")
	waitFor(t, sim, 90*time.Second, "every job done", actionssim.JobsCompleted(5))
	waitFor(t, sim, 30*time.Second, "no registrations left", func(s actionssim.Snapshot) bool { return len(liveRunners(s)) == 0 })
	eventually(t, 30*time.Second, "backend empty", func() bool { return env.leftovers(t) == 0 })
	svc.stop(t)
}

// TestE2E_goneRunnerRemovedWhileGitHubFails: runners finish while GitHub
// answers 500 to runner removals and message polls (so their JobCompleted
// is late); their VMs are removed at once instead of being kept until
// GitHub answers again.
func TestE2E_goneRunnerRemovedWhileGitHubFails(t *testing.T) {
	env := tartEnv(t)
	sim := startSim(t)
	addr := testutil.FreeLoopbackAddr(t)
	cfg := writeConfig(t, sim.OrgConfigURL("acme"), addr, scaleSetHCL{name: "gone", backend: env.kind, max: 2, backendBlock: env.block(nil)})
	svc := startService(t, cfg, addr)
	waitFor(t, sim, 30*time.Second, "session", actionssim.HasSession("gone"))
	sim.QueueJobs(2, 1500*time.Millisecond, "gone")
	waitFor(t, sim, 60*time.Second, "jobs running", actionssim.JobsInState(actionssim.JobRunning, 2))

	const outage = 40 * time.Second
	began := time.Now()
	sim.FailFor(outage, http.StatusInternalServerError, actionssim.EndpointRunners, actionssim.EndpointGetMessage, actionssim.EndpointDeleteMessage)
	waitFor(t, sim, 30*time.Second, "jobs done", actionssim.JobsCompleted(2))
	eventually(t, outage-5*time.Second, "VMs removed during the outage", func() bool { return env.leftovers(t) == 0 })
	must.Less(t, outage, time.Since(began), must.Sprint("removed while GitHub still failed"))
	sim.ClearFaults()
	waitFor(t, sim, 30*time.Second, "no registrations left", func(s actionssim.Snapshot) bool { return len(liveRunners(s)) == 0 })
	svc.stop(t)
}
