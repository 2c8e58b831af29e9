// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// observer follows the flow from the outside while it runs: every
// dispatched child (its payload is the runner's JIT config), the processes
// of the machine (no JIT config in any argv or environment), the VMs and
// containers the agent runs.
type observer struct {
	fa *flowAgent

	mu sync.Mutex
	// secrets: per child, the JIT config and the forms it could leak in
	secrets  map[string][]string
	alive    map[string]map[string]bool
	dupes    []string // runner names with two live children at once
	leaks    []string // where a secret was seen
	taskVMs  int      // most task VMs seen at once
	contSeen int      // most runner containers seen at once
	errs     []string
	samples  int
	// canaryIn records where the scan saw the canary's made-up secret
	// ("cmdline", "environ").
	canaryIn map[string]bool

	stop chan struct{}
	done chan struct{}
}

// newObserver starts observing. A canary process holding a made-up secret
// in its argv and environment proves that the process scan sees a leak.
func newObserver(t testing.TB, fa *flowAgent) *observer {
	t.Helper()
	o := &observer{fa: fa, secrets: map[string][]string{}, alive: map[string]map[string]bool{}, canaryIn: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	canary := fmt.Sprintf("canary-secret-%d", time.Now().UnixNano())
	// one process: the canary is its argv[0] and in its environment
	cmd := exec.Command("sleep", "600")
	cmd.Args[0] = canary
	cmd.Env = append(os.Environ(), "CANARY_SECRET="+canary)
	must.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	o.secrets[canaryOwner] = []string{canary}
	go o.loop()
	t.Cleanup(o.close)
	return o
}

func (o *observer) close() {
	select {
	case <-o.stop:
	default:
		close(o.stop)
	}
	<-o.done
}

func (o *observer) loop() {
	defer close(o.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		o.sample()
		select {
		case <-o.stop:
			return
		case <-tick.C:
		}
	}
}

func (o *observer) fail(format string, a ...any) {
	o.mu.Lock()
	o.errs = append(o.errs, fmt.Sprintf(format, a...))
	o.mu.Unlock()
}

// sample looks once at Nomad, the processes, the VMs and the containers.
func (o *observer) sample() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := o.fa.agent.API()
	q := (&api.QueryOptions{Namespace: runnerNS}).WithContext(ctx)
	stubs, _, err := c.Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}}, q)
	if err == nil {
		live := map[string]map[string]bool{}
		for _, s := range stubs {
			if s.ParentID == "" {
				continue
			}
			o.mu.Lock()
			_, known := o.secrets[s.ID]
			o.mu.Unlock()
			if !known {
				if job, _, err := c.Jobs().Info(s.ID, q); err == nil && len(job.Payload) > 0 {
					o.mu.Lock()
					o.secrets[s.ID] = secretForms(string(job.Payload))
					o.mu.Unlock()
				}
			}
			if s.Status != "dead" {
				name := s.Meta[nomadbackendRunnerKey]
				if live[name] == nil {
					live[name] = map[string]bool{}
				}
				live[name][s.ID] = true
			}
		}
		o.mu.Lock()
		for name, ids := range live {
			if len(ids) > 1 && !slices.Contains(o.dupes, name) {
				o.dupes = append(o.dupes, name)
			}
		}
		o.alive = live
		o.mu.Unlock()
	}
	o.scanProcs()
	vms := taskVMs(o.fa.agent.TartHome)
	conts := o.fa.runnerContainers(ctx)
	o.mu.Lock()
	o.taskVMs = max(o.taskVMs, len(vms))
	o.contSeen = max(o.contSeen, len(conts))
	o.samples++
	o.mu.Unlock()
}

// secretForms is a JIT config as dispatched, base64-encoded again (as in
// Nomad's JSON), and its one-time credential.
func secretForms(blob string) []string {
	forms := []string{blob, base64.StdEncoding.EncodeToString([]byte(blob))}
	if cfg, err := actionssim.ParseJITConfig(blob); err == nil && len(cfg.RSAParams.D) >= 16 {
		forms = append(forms, cfg.RSAParams.D)
	}
	return forms
}

// allSecrets returns every secret form seen so far, by owner.
func (o *observer) allSecrets() map[string][]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string][]string, len(o.secrets))
	for owner, forms := range o.secrets {
		out[owner] = forms
	}
	return out
}

// scanProcs reads every process's argv and environment.
func (o *observer) scanProcs() {
	secrets := o.allSecrets()
	if len(secrets) == 0 {
		return
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		o.fail("read /proc: %v", err)
		return
	}
	self := fmt.Sprint(os.Getpid())
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == self {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err != nil {
				continue // gone, or a kernel thread
			}
			for owner, forms := range secrets {
				for _, s := range forms {
					if bytes.Contains(b, []byte(s)) {
						comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
						o.mu.Lock()
						if owner == canaryOwner {
							o.canaryIn[f] = true
						} else {
							o.leaks = append(o.leaks, fmt.Sprintf("%s: pid %s (%s) %s", owner, e.Name(), strings.TrimSpace(string(comm)), f))
						}
						o.mu.Unlock()
					}
				}
			}
		}
	}
}
