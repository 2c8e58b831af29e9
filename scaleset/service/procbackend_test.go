// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
	"github.com/tartnomad/nomad-driver-tart/sim/fakerunner"
)

// goBackend runs each runner as fakerunner.Run in a goroutine: a backend
// with no process or container, for service tests of the GitHub side.
type goBackend struct {
	mu      sync.Mutex
	runners map[string]*goRunner
	held    int
	maxHeld int
	// failStarts makes StartRunner fail while positive (counts down).
	failStarts int
	// neverOnline keeps new runners pending without running the fake
	// runner (a VM that never boots).
	neverOnline bool
	starts      int
	jits        []string
	wg          sync.WaitGroup
}

type goRunner struct {
	name   string
	id     int
	state  backend.State
	cancel context.CancelFunc
	done   chan struct{}
	at     time.Time
}

func newGoBackend() *goBackend { return &goBackend{runners: map[string]*goRunner{}} }

func (b *goBackend) Name() string { return "go" }

func (b *goBackend) StartRunner(ctx context.Context, name, jit string) (string, error) {
	return b.StartIdentified(ctx, backend.Identity{Name: name}, jit)
}

func (b *goBackend) StartIdentified(_ context.Context, rid backend.Identity, jit string) (string, error) {
	name := rid.Name
	b.mu.Lock()
	defer b.mu.Unlock()
	b.starts++
	b.jits = append(b.jits, jit)
	if b.failStarts > 0 {
		b.failStarts--
		return "", errors.New("simulated backend failure")
	}
	if _, ok := b.runners[name]; ok {
		return "", fmt.Errorf("runner %q exists", name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &goRunner{name: name, id: rid.RunnerID, state: backend.StateRunning, cancel: cancel, done: make(chan struct{}), at: time.Now()}
	b.runners[name] = r
	b.held++
	b.maxHeld = max(b.maxHeld, b.held)
	if b.neverOnline {
		r.state = backend.StatePending
		close(r.done)
		return name, nil
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer close(r.done)
		_, err := fakerunner.Run(ctx, fakerunner.Config{JITConfig: jit, ConnectTimeout: 5 * time.Second})
		b.mu.Lock()
		defer b.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			r.state = backend.StateFailed
			return
		}
		r.state = backend.StateExited
	}()
	return name, nil
}

func (b *goBackend) RemoveRunner(_ context.Context, id string) error {
	b.mu.Lock()
	r, ok := b.runners[id]
	if ok {
		delete(b.runners, id)
		b.held--
	}
	b.mu.Unlock()
	if ok {
		r.cancel()
		<-r.done
	}
	return nil
}

func (b *goBackend) ListRunners(context.Context) ([]backend.Runner, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]backend.Runner, 0, len(b.runners))
	for _, r := range b.runners {
		out = append(out, backend.Runner{Name: r.name, RunnerID: r.id, ResourceID: r.name, State: r.state, CreatedAt: r.at})
	}
	return out, nil
}

func (b *goBackend) Shutdown(context.Context) {}

func (b *goBackend) close() {
	b.mu.Lock()
	for _, r := range b.runners {
		r.cancel()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *goBackend) stats() (held, maxHeld, starts int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held, b.maxHeld, b.starts
}
