// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scaler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/actions/scaleset"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeGitHub is an in-memory registry of runner registrations.
type fakeGitHub struct {
	mu         sync.Mutex
	nextID     int
	byName     map[string]scaleset.RunnerReference
	busy       map[string]bool
	jitErr     error
	removeErr  error
	jitCalls   int
	lookups    int
	removed    []string
	scaleSetID int
}

func newFakeGitHub(scaleSetID int) *fakeGitHub {
	return &fakeGitHub{nextID: 100, byName: map[string]scaleset.RunnerReference{}, busy: map[string]bool{}, scaleSetID: scaleSetID}
}

func (g *fakeGitHub) GenerateJitRunnerConfig(_ context.Context, s *scaleset.RunnerScaleSetJitRunnerSetting, id int) (*scaleset.RunnerScaleSetJitRunnerConfig, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.jitCalls++
	if g.jitErr != nil {
		return nil, g.jitErr
	}
	if _, ok := g.byName[s.Name]; ok {
		return nil, fmt.Errorf("generate: %w", scaleset.RunnerExistsError)
	}
	g.nextID++
	ref := scaleset.RunnerReference{ID: g.nextID, Name: s.Name, RunnerScaleSetID: id}
	g.byName[s.Name] = ref
	return &scaleset.RunnerScaleSetJitRunnerConfig{Runner: &ref, EncodedJITConfig: "SECRET-JIT-" + s.Name}, nil
}

func (g *fakeGitHub) GetRunnerByName(_ context.Context, name string) (*scaleset.RunnerReference, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lookups++
	ref, ok := g.byName[name]
	if !ok {
		return nil, nil
	}
	return &ref, nil
}

func (g *fakeGitHub) RemoveRunner(_ context.Context, id int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.removeErr != nil {
		return g.removeErr
	}
	for name, ref := range g.byName {
		if int64(ref.ID) == id {
			if g.busy[name] {
				return fmt.Errorf("remove: %w", scaleset.JobStillRunningError)
			}
			delete(g.byName, name)
			g.removed = append(g.removed, name)
			return nil
		}
	}
	return fmt.Errorf("remove: %w", scaleset.RunnerNotFoundError)
}

func (g *fakeGitHub) register(name string) scaleset.RunnerReference {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nextID++
	ref := scaleset.RunnerReference{ID: g.nextID, Name: name, RunnerScaleSetID: g.scaleSetID}
	g.byName[name] = ref
	return ref
}

func (g *fakeGitHub) names() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for n := range g.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// fakeBackend holds runners in memory; new runners start in startState.
type fakeBackend struct {
	mu         sync.Mutex
	runners    map[string]backend.Runner // by resource ID
	startErr   error
	listErr    error
	startState backend.State
	starts     int
	maxHeld    int
	jits       []string
	// onStart runs inside StartRunner (without the lock), to play events
	// that arrive while a start is in flight.
	onStart func(name string)
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{runners: map[string]backend.Runner{}, startState: backend.StateRunning}
}

func (b *fakeBackend) Name() string { return "fake" }

func (b *fakeBackend) StartIdentified(_ context.Context, rid backend.Identity, jit string) (string, error) {
	name := rid.Name
	if b.onStart != nil {
		b.onStart(name)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.starts++
	if b.startErr != nil {
		return "", b.startErr
	}
	for _, r := range b.runners {
		if r.Name == name {
			return "", errors.New("name in use")
		}
	}
	b.jits = append(b.jits, jit)
	id := "res-" + name
	b.runners[id] = backend.Runner{Name: name, RunnerID: rid.RunnerID, ResourceID: id, State: b.startState}
	b.maxHeld = max(b.maxHeld, len(b.runners))
	return id, nil
}

func (b *fakeBackend) RemoveRunner(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.runners, id)
	return nil
}

func (b *fakeBackend) ListRunners(context.Context) ([]backend.Runner, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.listErr != nil {
		return nil, b.listErr
	}
	out := make([]backend.Runner, 0, len(b.runners))
	for _, r := range b.runners {
		out = append(out, r)
	}
	return out, nil
}

// add puts a runner on the backend as an earlier process left it, with
// the GitHub runner ID it recorded (0: none recorded).
func (b *fakeBackend) add(name string, id int, st backend.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.runners["res-"+name] = backend.Runner{Name: name, RunnerID: id, ResourceID: "res-" + name, State: st}
}

func (b *fakeBackend) setState(name string, st backend.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.runners["res-"+name]
	r.State = st
	b.runners["res-"+name] = r
}

func (b *fakeBackend) names() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, r := range b.runners {
		out = append(out, r.Name)
	}
	sort.Strings(out)
	return out
}

type countingRecorder struct {
	mu      sync.Mutex
	errors  map[string]int
	removed map[string]int
	stale   map[string]int
	online  int
}

func newCountingRecorder() *countingRecorder {
	return &countingRecorder{errors: map[string]int{}, removed: map[string]int{}, stale: map[string]int{}}
}

func (r *countingRecorder) RunnerStarted(time.Duration, string) {}
func (r *countingRecorder) RunnerOnline(time.Duration) {
	r.mu.Lock()
	r.online++
	r.mu.Unlock()
}
func (r *countingRecorder) BackendError(op string) {
	r.mu.Lock()
	r.errors[op]++
	r.mu.Unlock()
}
func (r *countingRecorder) RunnerRemoved(reason string) {
	r.mu.Lock()
	r.removed[reason]++
	r.mu.Unlock()
}

func (r *countingRecorder) StaleMessage(kind string) {
	r.mu.Lock()
	r.stale[kind]++
	r.mu.Unlock()
}

// setQueued marks a runner as waiting for capacity (or not) with reason.
func (b *fakeBackend) setQueued(name string, queued bool, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, r := range b.runners {
		if r.Name == name {
			r.WaitingForCapacity, r.Reason = queued, reason
			b.runners[id] = r
		}
	}
}
