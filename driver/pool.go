// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/tartnomad/nomad-driver-tart/tart"
)

// tartHost is everything that touches tart for the long-lived plugin
// process: the client, the VM slots and the warm pool. It is created
// lazily, on the first Fingerprint, StartTask or RecoverTask, because only
// the long-lived process gets those: the short-lived discovery and
// validation processes Nomad starts at agent start must not adopt or delete
// anything.
type tartHost struct {
	cfg     PluginConfig
	client  *tart.Client
	slots   *tart.Slots
	pool    *tart.Pool
	dataDir string
	// tartEnv is the environment tart commands of supervisors get on top
	// of the plugin's own.
	tartEnv []string

	// starting holds VMs that a StartTask of this process is creating, so
	// the reconcile never collects them before their task is stored.
	mu       sync.Mutex
	starting map[string]int

	// starts counts warm claims and cold starts for the fingerprint.
	starts *startCounts
}

// newTartHost starts the warm pools; onPoolEvent is called (without
// blocking) after each pool event, e.g. a claim or a warm VM ready.
func newTartHost(ctx context.Context, cfg PluginConfig, logger hclog.Logger, onPoolEvent func()) (*tartHost, error) {
	opts := []tart.Option{tart.WithBinary(cfg.TartPath), tart.WithLogger(slogFor(logger.Named("tart"))), tart.WithEnv("TART_NO_AUTO_PRUNE=1")}
	env := []string{"CI=1", "TART_NO_AUTO_PRUNE=1"}
	if cfg.TartHome != "" {
		opts = append(opts, tart.WithHome(cfg.TartHome))
		env = append(env, "TART_HOME="+cfg.TartHome)
	}
	client := tart.NewClient(opts...)
	if err := client.CheckHome(); err != nil {
		// No relative fallback: task state would land under whatever
		// directory the plugin was started in.
		return nil, fmt.Errorf("tart_home: %w", err)
	}
	seed := cfg.MACSeed
	if seed == "" {
		seed, _ = os.Hostname()
	}
	slots, err := tart.NewSlots(cfg.MaxVMs, seed)
	if err != nil {
		return nil, fmt.Errorf("mac_seed: %w", err)
	}
	pools := tartPools(cfg)
	plog := logger.Named("pool")
	starts := &startCounts{}
	pool, err := tart.NewPool(client, slots, pools, tart.PoolOptions{
		Logger:        slogFor(logger),
		BootTimeout:   cfg.BootTimeout,
		ReadyInterval: cfg.AgentPollInterval,
		StopTimeout:   cfg.VMStopTimeout,
		// A cold start waits this long for a slot, then fails with
		// tart.ErrNoSlot (a recoverable error for Nomad).
		SlotWaitTimeout: cfg.SlotWaitTimeout,
		// An unready warm VM younger than this may be the boot of an
		// earlier plugin process that is still alive: Start leaves it
		// alone (and adopts it once ready) instead of deleting it.
		AdoptGracePeriod: cfg.GCGracePeriod,
		OnEvent: func(e tart.Event) {
			starts.observe(e)
			plog.Debug("pool event", "type", string(e.Type), "pool", e.Pool, "vm_name", e.VM, "message", e.Message)
			onPoolEvent()
		},
	})
	if err != nil {
		return nil, fmt.Errorf("invalid pools: %w", err)
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = filepath.Join(client.Home(), "nomad-driver-tart")
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "tasks"), 0o700); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	// Start keeps running VMs of ours (tasks' VMs keep their slots), adopts
	// ready warm VMs an earlier process left, deletes unclaimed warm VMs it
	// cannot use, and refills in the background until the driver's
	// Shutdown detaches it (ready warm VMs stay for the next process) or
	// ctx ends. Tasks' VMs are never touched here; RecoverTask re-attaches
	// them.
	if err := pool.Start(ctx); err != nil {
		return nil, fmt.Errorf("start warm pools: %w", err)
	}
	rt := &tartHost{cfg: cfg, client: client, slots: slots, pool: pool, dataDir: dataDir, tartEnv: env, starting: map[string]int{}, starts: starts}
	if err := rt.publishSlots(seed); err != nil {
		// Only the device plugin's checks need it; the driver works on.
		logger.Warn("failed to publish the driver's slots for nomad-device-tart", "error", err)
	}
	return rt, nil
}

// tartPools are the plugin's pool blocks as tart pools: NAT, no shared
// dirs, the plugin's default cpu and memory applied by Validate.
func tartPools(cfg PluginConfig) []tart.PoolConfig {
	pools := make([]tart.PoolConfig, 0, len(cfg.Pools))
	for _, p := range cfg.Pools {
		pools = append(pools, tart.PoolConfig{Name: p.Name, Size: p.Size, Mode: tart.PoolMode(p.Mode), ResumeCommand: p.ResumeCommand,
			VMSpec: tart.VMSpec{Image: p.Image, CPU: p.CPU, MemoryMiB: p.Memory, DiskSizeGB: p.DiskSize}})
	}
	return pools
}

// namedPoolFits returns nil when the pool the task names (spec.Pool) is
// configured and its VMs fit the task (tart.PoolConfig.Fits: same image,
// the task's cpu, memory and disk size, no shared dirs, NAT network),
// else an error saying why the task must cold-start. An unknown name (a
// typo, or a client configured differently) lists the pools this client
// has.
func namedPoolFits(cfg PluginConfig, spec tart.VMSpec) error {
	names := make([]string, 0, len(cfg.Pools))
	for _, pc := range tartPools(cfg) {
		if pc.Name == spec.Pool {
			return pc.Fits(spec)
		}
		names = append(names, pc.Name)
	}
	known := "none"
	if len(names) > 0 {
		known = strings.Join(names, ", ")
	}
	return fmt.Errorf("pool %q is not configured on this client (pools: %s)", spec.Pool, known)
}

// markStarting protects name from the reconcile until the returned func is
// called.
func (r *tartHost) markStarting(name string) func() {
	r.mu.Lock()
	r.starting[name]++
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.starting[name]--; r.starting[name] <= 0 {
			delete(r.starting, name)
		}
	}
}

func (r *tartHost) isStarting(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starting[name] > 0
}
