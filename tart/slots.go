// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// DefaultMaxVMs is the default number of VM slots per host: Apple lets a
// host run two macOS guests at once.
const DefaultMaxVMs = 2

// ErrNoSlot is returned when a wait for a VM slot ends without one: its
// timeout passed or its context ended. The error also matches the
// context's error (context.DeadlineExceeded or context.Canceled), so
// errors.Is(err, ErrNoSlot) tells "no slot freed up" apart from a context
// that ended during a later step (a pull or a boot).
var ErrNoSlot = errors.New("no vm slot free")

// Slot is one of a host's VM slots. Every running VM of ours, warm or busy,
// holds exactly one; its MAC address is fixed per slot.
type Slot struct {
	Index int
	MAC   string
}

// Slots is a host's VM slots (NewSlots), which a Pool hands out: every VM
// of the pool, warm or busy, holds one, and a start that finds none free
// waits for one, FIFO, ahead of the pool's background refill. Callers
// outside the pool only read it (Max, Available, Describe, ReadSlotUse).
// It is safe for concurrent use.
type Slots struct {
	seed string
	macs []string

	mu      sync.Mutex
	owners  []string // "" = free
	waiters []*slotWaiter
	changed chan struct{}
	preempt func() bool
}

type slotWaiter struct {
	owner string
	ch    chan int // receives the handed-over slot index (buffered 1)
}

// NewSlots returns max slots (DefaultMaxVMs when max <= 0) whose MACs are
// derived from seed (e.g. the host name, or a configured value).
func NewSlots(max int, seed string) (*Slots, error) {
	if max <= 0 {
		max = DefaultMaxVMs
	}
	s := &Slots{seed: seed, macs: make([]string, max), owners: make([]string, max), changed: make(chan struct{})}
	seen := map[string]int{}
	for i := range max {
		m := slotMAC(seed, i)
		if j, dup := seen[m]; dup {
			return nil, fmt.Errorf("slots %d and %d derive the same mac %s from seed %q: choose another seed", j, i, m, seed)
		}
		seen[m] = i
		s.macs[i] = m
	}
	return s, nil
}

// Max is the number of slots.
func (s *Slots) Max() int { return len(s.macs) }

// mac returns the MAC address of slot index ("" when out of range).
func (s *Slots) mac(index int) string {
	if index < 0 || index >= len(s.macs) {
		return ""
	}
	return s.macs[index]
}

// slotForMAC returns the slot whose MAC is mac, which is how slot state is
// rebuilt from the VMs found at startup.
func (s *Slots) slotForMAC(mac string) (int, bool) {
	norm, err := normalizeMAC(mac)
	if err != nil {
		return 0, false
	}
	for i, m := range s.macs {
		if m == norm {
			return i, true
		}
	}
	return 0, false
}

// setPreempter installs fn, called (without locks held) when an acquire has
// to wait: it should start releasing a slot held by an idle warm VM and
// report whether it did. The Pool installs itself here.
func (s *Slots) setPreempter(fn func() bool) {
	s.mu.Lock()
	s.preempt = fn
	s.mu.Unlock()
}

// take marks the first free slot as owned; caller holds mu.
func (s *Slots) take(owner string) (int, bool) {
	for i, o := range s.owners {
		if o == "" {
			s.owners[i] = owner
			return i, true
		}
	}
	return 0, false
}

func (s *Slots) slot(i int) Slot { return Slot{Index: i, MAC: s.macs[i]} }

// tryAcquire takes a free slot for owner without waiting. It fails when no
// slot is free or when an acquire is already waiting (waiters go first).
func (s *Slots) tryAcquire(owner string) (Slot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiters) > 0 {
		return Slot{}, false
	}
	i, ok := s.take(ownerName(owner))
	if !ok {
		return Slot{}, false
	}
	return s.slot(i), true
}

// acquire takes a slot for owner, waiting until one is released or ctx
// ends (then the error matches ErrNoSlot and ctx's error). While it waits
// it asks the preempter (the warm pool) once to give up an idle warm VM's
// slot.
func (s *Slots) acquire(ctx context.Context, owner string) (Slot, error) {
	owner = ownerName(owner)
	s.mu.Lock()
	if len(s.waiters) == 0 {
		if i, ok := s.take(owner); ok {
			s.mu.Unlock()
			return s.slot(i), nil
		}
	}
	w := &slotWaiter{owner: owner, ch: make(chan int, 1)}
	s.waiters = append(s.waiters, w)
	preempt := s.preempt
	s.mu.Unlock()

	if preempt != nil {
		preempt()
	}
	select {
	case i := <-w.ch:
		return s.slot(i), nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for k, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:k], s.waiters[k+1:]...)
			break
		}
	}
	s.mu.Unlock()
	// A slot may have been handed over between ctx ending and removal.
	select {
	case i := <-w.ch:
		s.release(i)
	default:
	}
	return Slot{}, fmt.Errorf("wait for a vm slot (%d in use: %s): %w (%w)", s.Max(), s.Describe(), ErrNoSlot, ctx.Err())
}

// claim marks slot index as held by owner, for rebuilding state from VMs
// found at startup. It fails if the slot is out of range or held by another
// owner.
func (s *Slots) claim(index int, owner string) (Slot, error) {
	owner = ownerName(owner)
	s.mu.Lock()
	defer s.mu.Unlock()
	if index < 0 || index >= len(s.owners) {
		return Slot{}, fmt.Errorf("slot %d out of range 0..%d", index, len(s.owners)-1)
	}
	if o := s.owners[index]; o != "" && o != owner {
		return Slot{}, fmt.Errorf("slot %d already held by %s", index, o)
	}
	s.owners[index] = owner
	return s.slot(index), nil
}

// setOwner records a new owner for a held slot (a claimed warm VM now
// belongs to a task).
func (s *Slots) setOwner(index int, owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index >= 0 && index < len(s.owners) && s.owners[index] != "" {
		s.owners[index] = ownerName(owner)
	}
}

// release frees slot index, handing it to the longest waiting acquire if
// any. Releasing a free slot is a no-op.
func (s *Slots) release(index int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index < 0 || index >= len(s.owners) || s.owners[index] == "" {
		return
	}
	if len(s.waiters) > 0 {
		w := s.waiters[0]
		s.waiters = s.waiters[1:]
		s.owners[index] = w.owner
		w.ch <- index
		return
	}
	s.owners[index] = ""
	close(s.changed)
	s.changed = make(chan struct{})
}

// releaseOwner frees the slot held by owner, reporting whether there was
// one.
func (s *Slots) releaseOwner(owner string) bool {
	s.mu.Lock()
	idx := -1
	for i, o := range s.owners {
		if o == owner {
			idx = i
			break
		}
	}
	s.mu.Unlock()
	if idx < 0 {
		return false
	}
	s.release(idx)
	return true
}

// ownerSlot returns the slot held by owner.
func (s *Slots) ownerSlot(owner string) (Slot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.owners {
		if o == owner {
			return s.slot(i), true
		}
	}
	return Slot{}, false
}

// Available is the number of free slots.
func (s *Slots) Available() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, o := range s.owners {
		if o == "" {
			n++
		}
	}
	return n
}

// waiting is the number of acquire calls waiting for a slot.
func (s *Slots) waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiters)
}

// ownerMap returns a copy of slot index -> owner for held slots.
func (s *Slots) ownerMap() map[int]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[int]string{}
	for i, o := range s.owners {
		if o != "" {
			m[i] = o
		}
	}
	return m
}

// nextChange returns a channel closed the next time a slot becomes free.
func (s *Slots) nextChange() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Describe renders the held slots and their owners as "0=name, 1=name",
// in slot order, for error messages.
func (s *Slots) Describe() string {
	owners := s.ownerMap()
	keys := make([]int, 0, len(owners))
	for k := range owners {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d=%s", k, owners[k]))
	}
	return strings.Join(parts, ", ")
}

func ownerName(o string) string {
	if o == "" {
		return "(anonymous)"
	}
	return o
}
