// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver_test

import (
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/driver/harness"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// chaosSeed fixes the random SIGKILL points (printed, to replay a failure).
const chaosSeed = 12

// TestDriver_SIGKILLsDuringBurst SIGKILLs the plugin at random points of
// bursts of StartTask calls (mid-clone, mid-boot, mid-supervisor start),
// relaunches it, recovers what started, stops and destroys it. Leak
// guarded: whatever a killed plugin was doing, the next one recovers it or
// its reconcile collects it, so at the end no faketart or supervisor
// process, no VM and no task state dir is left in TART_HOME.
func TestDriver_SIGKILLsDuringBurst(t *testing.T) {
	r := rand.New(rand.NewPCG(chaosSeed, 2))
	t.Logf("seed %d", chaosSeed)
	e, h := newTartEnv(t, envOptions{Env: []string{"FAKETART_BOOT_DELAY=300ms"}, PluginConfig: `
boot_timeout    = "10s"
gc_interval     = "500ms"
gc_grace_period = "10s"
`})
	var pids []int
	for round := range 3 {
		var mu sync.Mutex
		var started []*harness.Task
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				task, err := h.TryStartTask(harness.TaskSpec{Config: sh(`echo ready; exec sleep 30`)})
				if err == nil {
					mu.Lock()
					started = append(started, task)
					mu.Unlock()
				}
			})
		}
		d := time.Duration(r.IntN(1500)) * time.Millisecond
		t.Logf("round %d: kill after %s", round, d)
		time.Sleep(d) // the random point of the burst; nothing waits on it
		pids = append(pids, h.PID(t))
		h.KillPlugin(t)
		wg.Wait()
		h.Relaunch(t)
		for _, task := range started {
			if err := h.TryRecoverTask(task); err != nil {
				continue // gone with the plugin: recovery deleted its VM
			}
			h.StopTask(t, task.ID, 2*time.Second, "")
			h.DestroyTask(t, task.ID, true)
		}
	}
	live := h.PID(t)
	pids = append(pids, live)
	// Half-started tasks the client never heard of are the reconcile's:
	// their VMs go once gc_grace_period has passed.
	testutil.AssertCensusEmpty(t, testutil.CensusScope{TartHome: e.home, Parents: pids,
		TempDirs: []string{filepath.Join(e.home, "nomad-driver-tart", "tasks")}, Exclude: []int{live}}, 45*time.Second)
	must.SliceEmpty(t, e.vmNames(t))
}
