// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkPool_ClaimVsColdStart measures, side by side through faketart
// (200ms simulated boot), how long a task waits for a ready VM from the
// warm pool and from a cold start, and reports cold/warm.
func BenchmarkPool_ClaimVsColdStart(b *testing.B) {
	e := newFT(b, "FAKETART_BOOT_DELAY=200ms")
	c := e.client()
	ctx := context.Background()
	if _, err := c.EnsureImage(ctx, ftImage, PullOptions{}); err != nil {
		b.Fatal(err)
	}
	slots, err := NewSlots(2, "bench")
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewPool(c, slots, []PoolConfig{{Name: "warm", Size: 1, VMSpec: VMSpec{Image: ftImage}}},
		PoolOptions{ReadyInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = p.Shutdown(ctx) }()
	waitReady := func() {
		for p.Stats()[0].Ready < 1 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	var warm, cold time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		waitReady()
		b.StartTimer()
		start := time.Now()
		vm, err := p.claim(ctx, "bench", VMSpec{Pool: "warm"})
		warm += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		cvm, err := p.startVM(ctx, TaskVMName(fmt.Sprintf("bench-%d", i)), VMSpec{Image: ftImage}, nil)
		cold += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = p.Release(ctx, vm)
		_ = p.Release(ctx, cvm)
		b.StartTimer()
	}
	b.ReportMetric(float64(warm.Microseconds())/float64(b.N)/1000, "warm-ms/op")
	b.ReportMetric(float64(cold.Microseconds())/float64(b.N)/1000, "cold-ms/op")
	b.ReportMetric(float64(cold)/float64(max(warm, 1)), "cold/warm")
}
