// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package device_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/device"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil/nomadagent"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

const (
	nomadImage = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
	devicePkg  = "./cmd/nomad-device-tart"
	maxVMs     = 2
	burst      = 10
	// waitTimeout only bounds failure; the machine may be loaded.
	waitTimeout = 4 * time.Minute
)

// cluster is one Nomad server and two Mac clients (faketart), each with
// max_vms = 2, a warm pool of one VM and both plugins.
type cluster struct {
	srv  *nomadagent.Agent
	macs []*mac
}

// mac is one client with a tart path the test can break and heal.
type mac struct {
	*nomadagent.Agent
	host *host
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{srv: nomadagent.Start(t, nomadagent.Options{Name: "srv", Plugins: []string{}})}
	faketart := testutil.BuildBinary(t, "./sim/cmd/faketart")
	for i := range 2 {
		name := fmt.Sprintf("mac-%d", i)
		h := &host{faketart: faketart, tart: filepath.Join(t.TempDir(), "tart")}
		h.heal(t)
		a := nomadagent.Start(t, nomadagent.Options{
			Name:    name,
			Server:  c.srv,
			Plugins: []string{nomadagent.TartPlugin, devicePkg},
			Images:  []string{nomadImage},
			PluginConfig: map[string]string{
				"nomad-driver-tart": nomadagent.FastTartConfig + fmt.Sprintf(`tart_path = %q
mac_seed = %q
max_vms = %d
slot_wait_timeout = "5s"
pool {
  name  = "macos"
  image = %q
  size  = 1
}`, h.tart, name, maxVMs, nomadImage),
				device.BinaryName: fmt.Sprintf("tart_path = %q\nmax_vms = %d\nhealth_check_interval = \"1s\"", h.tart, maxVMs),
			},
			Ready: func(n *api.Node) bool { return len(healthySlots(n)) == maxVMs },
		})
		h.home = a.TartHome
		c.macs = append(c.macs, &mac{Agent: a, host: h})
	}
	return c
}

// healthySlots are the node's healthy tart/vm/slot instances.
func healthySlots(n *api.Node) []string {
	var ids []string
	if n.NodeResources == nil {
		return nil
	}
	for _, g := range n.NodeResources.Devices {
		if g.Vendor != device.Vendor || g.Type != device.Type || g.Name != device.Name {
			continue
		}
		for _, d := range g.Instances {
			if d.Healthy {
				ids = append(ids, d.ID)
			}
		}
	}
	return ids
}

// backendRunnerJob is a runner job as the nomad backend requires it (a
// required payload, the meta it sends), holding a slot for 4 s.
var backendRunnerJob = fmt.Sprintf(`
job "runner-backend" {
  type = "batch"
  parameterized {
    payload       = "required"
    meta_required = ["runner_name", "runner_scale_set_name"]
  }
  group "runner" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "runner" {
      driver = "tart"
      dispatch_payload {
        file = "jitconfig"
      }
      config {
        image      = %q
        stdin_file = "local/jitconfig"
        command    = "sleep"
        args       = ["4"]
      }
      resources {
        cpu    = 100
        memory = 64
        device "tart/vm" {
          count = 1
        }
      }
    }
  }
}`, nomadImage)

// runnerJob is a parameterized one-shot "runner" that holds a VM for hold;
// withDevice adds the slot request.
func runnerJob(id string, hold time.Duration, withDevice bool) string {
	dev := ""
	if withDevice {
		dev = `
        device "tart/vm" {
          count = 1
        }`
	}
	return fmt.Sprintf(`
job %q {
  type = "batch"
  parameterized {
    payload = "forbidden"
  }
  group "runner" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts  = 0
      unlimited = false
    }
    task "runner" {
      driver = "tart"
      config {
        image   = %q
        command = "sleep"
        args    = [%q]
      }
      resources {
        cpu    = 100
        memory = 64%s
      }
    }
  }
}`, id, nomadImage, fmt.Sprint(hold.Seconds()), dev)
}

// dispatch dispatches the parameterized job n times and returns the
// children's IDs.
func (c *cluster) dispatch(t *testing.T, jobID string, n int) []string {
	t.Helper()
	var ids []string
	for range n {
		resp, _, err := c.srv.API().Jobs().Dispatch(jobID, nil, nil, "", nil)
		must.NoError(t, err)
		ids = append(ids, resp.DispatchedJobID)
	}
	return ids
}

// concurrency samples the allocations of jobs until stopped: per node, the
// most placed at once (pending or running on the client) and the most
// running at once.
type concurrency struct {
	mu      sync.Mutex
	placed  map[string]int
	running map[string]int
	samples int
	stop    chan struct{}
	done    chan struct{}
}

func (c *cluster) watchConcurrency(t *testing.T, jobs []string) *concurrency {
	t.Helper()
	w := &concurrency{placed: map[string]int{}, running: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	want := map[string]bool{}
	for _, j := range jobs {
		want[j] = true
	}
	go func() { // owned by the test through stopAndGet
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			allocs, _, err := c.srv.API().Allocations().List(nil)
			if err == nil {
				placed, running := map[string]int{}, map[string]int{}
				for _, a := range allocs {
					if !want[a.JobID] || a.DesiredStatus != api.AllocDesiredStatusRun {
						continue
					}
					switch a.ClientStatus {
					case api.AllocClientStatusPending:
						placed[a.NodeName]++
					case api.AllocClientStatusRunning:
						placed[a.NodeName]++
						running[a.NodeName]++
					}
				}
				w.mu.Lock()
				for n, v := range placed {
					w.placed[n] = max(w.placed[n], v)
				}
				for n, v := range running {
					w.running[n] = max(w.running[n], v)
				}
				w.samples++
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { w.stopAndGet() })
	return w
}

func (w *concurrency) stopAndGet() (placed, running map[string]int, samples int) {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.placed), maps.Clone(w.running), w.samples
}

// waitDone waits until every job has a terminal allocation and returns the
// newest allocation of each.
func (c *cluster) waitDone(t *testing.T, jobs []string) map[string]*api.AllocationListStub {
	t.Helper()
	out := map[string]*api.AllocationListStub{}
	deadline := time.Now().Add(waitTimeout)
	for {
		for _, j := range jobs {
			if a := out[j]; a != nil {
				continue
			}
			stubs, _, err := c.srv.API().Jobs().Allocations(j, true, nil)
			if err != nil || len(stubs) == 0 {
				continue
			}
			newest := stubs[0]
			for _, s := range stubs[1:] {
				if s.CreateIndex > newest.CreateIndex {
					newest = s
				}
			}
			if newest.ClientStatus == api.AllocClientStatusComplete || newest.ClientStatus == api.AllocClientStatusFailed {
				out[j] = newest
			}
		}
		if len(out) == len(jobs) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d jobs finished within %s", len(out), len(jobs), waitTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitNoTaskVMs waits until no client's TART_HOME holds a task VM or a
// claimed warm VM (warm VMs stay on purpose).
func (c *cluster) waitNoTaskVMs(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var left []string
		for _, m := range c.macs {
			for _, vm := range m.VMs(t) {
				n, ours := tart.ParseVMName(vm)
				_, err := os.Stat(filepath.Join(m.TartHome, "vms", vm, tart.ClaimedMarker))
				if !ours || n.Kind == tart.KindTask || err == nil {
					left = append(left, m.NodeName+":"+vm)
				}
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("VMs left behind: %v", left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// devicesExhausted counts the jobs whose evaluations recorded a placement
// that failed because every slot device was taken.
func (c *cluster) devicesExhausted(t *testing.T, jobs []string) (n int, example string) {
	t.Helper()
	for _, j := range jobs {
		evals, _, err := c.srv.API().Jobs().Evaluations(j, nil)
		must.NoError(t, err)
	evals:
		for _, e := range evals {
			for _, m := range e.FailedTGAllocs {
				for dim := range m.DimensionExhausted {
					if strings.Contains(dim, "devices") {
						n++
						example = fmt.Sprintf("eval %s (%s): dimension %q exhausted on %d nodes", e.ID[:8], e.Status, dim, m.DimensionExhausted[dim])
						break evals
					}
				}
			}
		}
	}
	return n, example
}

func (c *cluster) mac(name string) *mac {
	for _, m := range c.macs {
		if m.NodeName == name {
			return m
		}
	}
	return nil
}

func (c *cluster) waitNode(t *testing.T, m *mac, what string, cond func(*api.Node) bool) *api.Node {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := m.Node(t)
		if cond(n) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %s not seen within %s", m.NodeName, what, waitTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNomadDevice_cluster runs the slot device on a real Nomad cluster: one
// server and two Mac clients (faketart), max_vms = 2 and a warm pool of
// one on each.
func TestNomadDevice_cluster(t *testing.T) {
	c := startCluster(t)
	for _, m := range c.macs {
		n := m.Node(t)
		must.Eq(t, []string{"slot-0", "slot-1"}, healthySlots(n))
		must.Eq(t, "1", n.Attributes["driver.tart"])
	}

	// Ten runners that each hold a slot for 3 s: the scheduler never puts
	// more than two on a Mac; the rest wait in a blocked evaluation
	// (devices exhausted) and all complete.
	t.Run("burst with the device", func(t *testing.T) {
		jobID := c.srv.RunJobHCL(t, runnerJob("runner-dev", 3*time.Second, true))
		start := time.Now()
		jobs := c.dispatch(t, jobID, burst)
		w := c.watchConcurrency(t, jobs)
		done := c.waitDone(t, jobs)
		placed, running, samples := w.stopAndGet()
		t.Logf("with the device: %d runners in %s; most placed at once per client %v, most running %v (%d samples)",
			burst, time.Since(start).Round(time.Second), placed, running, samples)
		for node, n := range placed {
			must.LessEq(t, maxVMs, n, must.Sprintf("node %s had %d VM tasks placed at once", node, n))
		}
		for j, a := range done {
			must.Eq(t, api.AllocClientStatusComplete, a.ClientStatus, must.Sprintf("job %s on %s", j, a.NodeName))
			// The driver saw the reservation in device_env.
			must.StrContains(t, nomadagent.TaskEvents(c.srv.Alloc(t, a.ID)), "VM slot reserved by the scheduler (slot-")
		}
		n, example := c.devicesExhausted(t, jobs)
		t.Logf("%d of %d runners were queued for a slot, e.g. %s", n, burst, example)
		must.Positive(t, n, must.Sprint("no runner waited with devices exhausted"))
		c.waitNoTaskVMs(t)
	})

	// The same burst without the device block: Nomad places by cpu and
	// memory only, so it puts more than two on a Mac; those wait in
	// StartTask for a slot and fail after slot_wait_timeout (5 s here)
	// while the first ones hold their slots for 8 s.
	t.Run("burst without the device (today's failure mode)", func(t *testing.T) {
		jobID := c.srv.RunJobHCL(t, runnerJob("runner-nodev", 8*time.Second, false))
		jobs := c.dispatch(t, jobID, burst)
		w := c.watchConcurrency(t, jobs)
		done := c.waitDone(t, jobs)
		placed, running, _ := w.stopAndGet()
		failed := 0
		var why string
		for _, a := range done {
			if a.ClientStatus == api.AllocClientStatusFailed {
				failed++
				if alloc := c.srv.Alloc(t, a.ID); why == "" {
					why = nomadagent.TaskEvents(alloc)
				}
			}
		}
		t.Logf("without the device: most placed at once per client %v, most running %v; %d of %d runners failed, e.g.:\n%s",
			placed, running, failed, burst, why)
		most := slices.Max(slices.Collect(maps.Values(placed)))
		must.Greater(t, maxVMs, most, must.Sprint("without the device Nomad should overbook a Mac"))
		must.Positive(t, failed)
		must.StrContains(t, why, "no VM slot free")
		c.waitNoTaskVMs(t)
	})

	// A Mac whose tart breaks turns its slots unhealthy: runners go to the
	// other Mac only, and come back once it heals.
	t.Run("broken tart stops placement until healed", func(t *testing.T) {
		broken := c.macs[0]
		broken.host.breakTart(t, false)
		n := c.waitNode(t, broken, "every slot unhealthy", func(n *api.Node) bool { return len(healthySlots(n)) == 0 })
		for _, g := range n.NodeResources.Devices {
			for _, d := range g.Instances {
				// "fails: …", or "did not answer" on a loaded machine
				must.StrContains(t, d.HealthDescription, "tart binary")
			}
		}
		jobID := c.srv.RunJobHCL(t, runnerJob("runner-broken", 2*time.Second, true))
		jobs := c.dispatch(t, jobID, 4)
		done := c.waitDone(t, jobs)
		for j, a := range done {
			must.Eq(t, api.AllocClientStatusComplete, a.ClientStatus, must.Sprintf("job %s", j))
			must.NotEq(t, broken.NodeName, a.NodeName, must.Sprintf("job %s placed on the broken Mac", j))
		}

		broken.host.heal(t)
		c.waitNode(t, broken, "slots and driver healthy again", func(n *api.Node) bool {
			d := n.Drivers["tart"]
			return len(healthySlots(n)) == maxVMs && d != nil && d.Healthy
		})
		// Four runners holding slots for 6 s need both Macs.
		jobs = c.dispatch(t, c.srv.RunJobHCL(t, runnerJob("runner-healed", 6*time.Second, true)), 4)
		done = c.waitDone(t, jobs)
		on := map[string]int{}
		for _, a := range done {
			must.Eq(t, api.AllocClientStatusComplete, a.ClientStatus)
			on[a.NodeName]++
		}
		t.Logf("after healing, runners per client: %v", on)
		must.Positive(t, on[broken.NodeName], must.Sprint("the healed Mac got no runner"))
		c.waitNoTaskVMs(t)
	})

	// The scale-set service's nomad backend on this cluster: runners
	// queued for a slot are reported as waiting for capacity (logged at
	// info), not as placement failures, and leave the queue as slots free.
	t.Run("nomad backend reports runners queued for a slot", func(t *testing.T) {
		c.srv.RunJobHCL(t, backendRunnerJob)
		logs := &testutil.SyncBuffer{}
		logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		b, err := nomadbackend.New(t.Context(), nomadbackend.Config{Address: c.srv.HTTPAddr, Namespace: "default",
			JobID: "runner-backend", PurgeGracePeriod: "1h", StartupTimeout: "30s"}, "macos", logger,
			nomadbackend.WithGetenv(func(string) string { return "" }))
		must.NoError(t, err)
		t.Cleanup(func() { b.Shutdown(context.Background()) })
		for i := range 6 {
			_, err := b.StartRunner(t.Context(), fmt.Sprintf("macos-%d", i), "jit-"+strconv.Itoa(i))
			must.NoError(t, err)
		}
		var queued []backend.Runner
		deadline := time.Now().Add(waitTimeout)
		for len(queued) < 2 {
			must.True(t, time.Now().Before(deadline), must.Sprint("no runner reported waiting for capacity"))
			time.Sleep(200 * time.Millisecond)
			list, err := b.ListRunners(t.Context())
			if err != nil {
				continue
			}
			queued = slices.DeleteFunc(list, func(r backend.Runner) bool { return !r.WaitingForCapacity })
		}
		t.Logf("%d runners waiting for capacity, e.g. %s: %s", len(queued), queued[0].Name, queued[0].Reason)
		must.Eq(t, backend.StatePending, queued[0].State)
		must.StrContains(t, queued[0].Reason, "queued for capacity")
		must.StrContains(t, queued[0].Reason, "devices: no devices match request")
		must.StrNotContains(t, queued[0].Reason, "no eligible node")
		for {
			list, err := b.ListRunners(t.Context())
			if err == nil && len(list) == 6 && !slices.ContainsFunc(list, func(r backend.Runner) bool { return r.State != backend.StateExited }) {
				break
			}
			must.True(t, time.Now().Before(deadline), must.Sprintf("runners did not all exit: %+v", list))
			time.Sleep(200 * time.Millisecond)
		}
		must.StrContains(t, logs.String(), "runner queued for capacity")
		must.StrContains(t, logs.String(), "runner left the capacity queue")
		must.StrNotContains(t, logs.String(), "nomad cannot place runner")
		must.StrNotContains(t, logs.String(), "runner job failed")
		c.waitNoTaskVMs(t)
	})

	// The device plugin is SIGKILLed while a runner holds a slot: Nomad
	// relaunches it, the slots stay healthy and the allocation keeps its
	// reservation and completes.
	t.Run("device plugin SIGKILLed", func(t *testing.T) {
		jobID := c.srv.RunJobHCL(t, runnerJob("runner-kill", 15*time.Second, true))
		jobs := c.dispatch(t, jobID, 1)
		var alloc *api.Allocation
		deadline := time.Now().Add(waitTimeout)
		for alloc == nil || alloc.ClientStatus != api.AllocClientStatusRunning {
			must.True(t, time.Now().Before(deadline), must.Sprint("runner never ran"))
			time.Sleep(200 * time.Millisecond)
			stubs, _, err := c.srv.API().Jobs().Allocations(jobs[0], true, nil)
			if err == nil && len(stubs) > 0 {
				alloc = c.srv.Alloc(t, stubs[0].ID)
			}
		}
		reserved := alloc.AllocatedResources.Tasks["runner"].Devices
		must.Len(t, 1, reserved)
		must.Len(t, 1, reserved[0].DeviceIDs)
		m := c.mac(alloc.NodeName)
		pids := m.PluginPIDs(device.BinaryName)
		must.Len(t, 1, pids, must.Sprint("one long-lived device plugin process"))
		must.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
		start := time.Now()
		for {
			now := m.PluginPIDs(device.BinaryName)
			if len(now) == 1 && now[0] != pids[0] {
				t.Logf("Nomad relaunched the device plugin in %s (pid %d -> %d)", time.Since(start).Round(time.Millisecond), pids[0], now[0])
				break
			}
			must.True(t, time.Since(start) < waitTimeout, must.Sprint("device plugin not relaunched"))
			time.Sleep(100 * time.Millisecond)
		}
		c.waitNode(t, m, "slots healthy after the relaunch", func(n *api.Node) bool { return len(healthySlots(n)) == maxVMs })
		again := c.srv.Alloc(t, alloc.ID)
		must.Eq(t, reserved[0].DeviceIDs, again.AllocatedResources.Tasks["runner"].Devices[0].DeviceIDs)
		done := c.waitDone(t, jobs)
		must.Eq(t, api.AllocClientStatusComplete, done[jobs[0]].ClientStatus)
		c.waitNoTaskVMs(t)
	})
}
