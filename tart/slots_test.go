// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func TestSlotMAC(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for i := range 64 {
		m := slotMAC("host-a", i)
		must.Eq(t, m, slotMAC("host-a", i)) // deterministic
		hw, err := net.ParseMAC(m)
		must.NoError(t, err)
		must.Len(t, 6, hw)
		must.Eq(t, byte(0x02), hw[0]&0x02, must.Sprint("locally administered"))
		must.Eq(t, byte(0), hw[0]&0x01, must.Sprint("unicast"))
		must.Eq(t, m, hw.String(), must.Sprint("lowercase, zero padded"))
		must.False(t, seen[m])
		seen[m] = true
	}
	must.NotEq(t, slotMAC("host-a", 0), slotMAC("host-b", 0))
}

func TestSlots_TryAcquire_Release(t *testing.T) {
	t.Parallel()
	s, err := NewSlots(0, "seed")
	must.NoError(t, err)
	must.Eq(t, DefaultMaxVMs, s.Max())
	a, ok := s.tryAcquire("a")
	must.True(t, ok)
	b, ok := s.tryAcquire("b")
	must.True(t, ok)
	must.NotEq(t, a.Index, b.Index)
	must.Eq(t, s.mac(a.Index), a.MAC)
	_, ok = s.tryAcquire("c")
	must.False(t, ok)
	must.Eq(t, 0, s.Available())
	must.Eq(t, map[int]string{a.Index: "a", b.Index: "b"}, s.ownerMap())

	changed := s.nextChange()
	s.release(a.Index)
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed on release")
	}
	must.Eq(t, 1, s.Available())
	s.release(a.Index) // already free: no-op
	must.Eq(t, 1, s.Available())
	must.True(t, s.releaseOwner("b"))
	must.False(t, s.releaseOwner("b"))
	must.Eq(t, 2, s.Available())
}

func TestSlots_Acquire_waitsFIFOAndBlocksTryAcquire(t *testing.T) {
	t.Parallel()
	s, _ := NewSlots(1, "seed")
	held, ok := s.tryAcquire("warm")
	must.True(t, ok)

	ctx := t.Context()
	got := make(chan Slot, 2)
	for _, owner := range []string{"first", "second"} {
		go func() {
			sl, err := s.acquire(ctx, owner)
			if err == nil {
				got <- sl
			}
		}()
		waitFor(t, func() bool { return s.waiting() == map[string]int{"first": 1, "second": 2}[owner] })
	}
	// A waiter exists: a background tryAcquire must not overtake it.
	s.release(held.Index)
	first := <-got
	must.Eq(t, "first", s.ownerMap()[first.Index])
	_, ok = s.tryAcquire("pool")
	must.False(t, ok)
	s.release(first.Index)
	second := <-got
	must.Eq(t, "second", s.ownerMap()[second.Index])
	s.release(second.Index)
	must.Eq(t, 1, s.Available())
}

func TestSlots_Acquire_contextEnds(t *testing.T) {
	t.Parallel()
	s, _ := NewSlots(1, "seed")
	held, _ := s.tryAcquire("busy")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.acquire(ctx, "task")
	must.ErrorIs(t, err, context.DeadlineExceeded)
	must.ErrorIs(t, err, ErrNoSlot)
	must.ErrorContains(t, err, "0=busy")
	must.Eq(t, 0, s.waiting())
	s.release(held.Index)
	must.Eq(t, 1, s.Available())
}

func TestSlots_Acquire_callsPreempter(t *testing.T) {
	t.Parallel()
	s, _ := NewSlots(1, "seed")
	held, _ := s.tryAcquire("warm")
	var calls atomic.Int32
	s.setPreempter(func() bool {
		calls.Add(1)
		go s.release(held.Index)
		return true
	})
	sl, err := s.acquire(t.Context(), "task")
	must.NoError(t, err)
	must.Eq(t, held.Index, sl.Index)
	must.Eq(t, int32(1), calls.Load())
	// Free slots: no preemption.
	s.release(sl.Index)
	_, err = s.acquire(t.Context(), "task2")
	must.NoError(t, err)
	must.Eq(t, int32(1), calls.Load())
}

func TestSlots_Claim_SlotForMAC(t *testing.T) {
	t.Parallel()
	s, _ := NewSlots(3, "seed")
	idx, ok := s.slotForMAC(strings2upper(s.mac(2)))
	must.True(t, ok)
	must.Eq(t, 2, idx)
	_, ok = s.slotForMAC("02:00:00:00:00:01")
	must.False(t, ok)
	_, ok = s.slotForMAC("junk")
	must.False(t, ok)

	sl, err := s.claim(2, "vm-a")
	must.NoError(t, err)
	must.Eq(t, s.mac(2), sl.MAC)
	_, err = s.claim(2, "vm-a") // idempotent for the same owner
	must.NoError(t, err)
	_, err = s.claim(2, "vm-b")
	must.ErrorContains(t, err, "already held by vm-a")
	_, err = s.claim(3, "vm-b")
	must.ErrorContains(t, err, "out of range")
	got, ok := s.ownerSlot("vm-a")
	must.True(t, ok)
	must.Eq(t, 2, got.Index)
	s.setOwner(2, "task-1")
	must.Eq(t, map[int]string{2: "task-1"}, s.ownerMap())
}

func strings2upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 32
		}
	}
	return string(b)
}

// waitFor polls cond until true or fails the test after 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
