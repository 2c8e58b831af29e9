// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"strings"
	"testing"

	"github.com/shoenig/test/must"
)

func TestParseVMName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
		ok   bool
		want VMName
	}{
		{"pool", "ntart-pool-default-1-a1b2c3", true, VMName{Kind: KindPool, Pool: "default", Slot: 1, ID: "a1b2c3"}},
		{"pool with dashes", "ntart-pool-mac-os-15-0-ff0011", true, VMName{Kind: KindPool, Pool: "mac-os-15", Slot: 0, ID: "ff0011"}},
		{"task", "ntart-task-abc-123", true, VMName{Kind: KindTask, ID: "abc-123"}},
		{"foreign", "my-vm", false, VMName{}},
		{"image-like", "ghcr.io/cirruslabs/macos:latest", false, VMName{}},
		{"empty task id", "ntart-task-", false, VMName{}},
		{"pool without slot", "ntart-pool-default-abc", false, VMName{}},
		{"pool bad slot", "ntart-pool-default-x-abc", false, VMName{}},
		{"prefix only", "ntart-pool-", false, VMName{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseVMName(tc.in)
			must.Eq(t, tc.ok, ok)
			must.Eq(t, tc.want, got)
			must.Eq(t, tc.ok, IsOurVM(tc.in))
		})
	}
}

func TestPoolVMName_roundTrip(t *testing.T) {
	t.Parallel()
	a, b := poolVMName("linux-small", 3), poolVMName("linux-small", 3)
	must.NotEq(t, a, b)
	n, ok := ParseVMName(a)
	must.True(t, ok)
	must.Eq(t, "linux-small", n.Pool)
	must.Eq(t, 3, n.Slot)
}

func TestTaskVMName(t *testing.T) {
	t.Parallel()
	must.Eq(t, "ntart-task-a1b2-c3_d.e", TaskVMName("a1b2-c3_d.e"))
	must.Eq(t, "ntart-task-alloc-1-task-x", TaskVMName("alloc/1 task:x"))
	must.True(t, len(TaskVMName(strings.Repeat("x", 500))) <= len("ntart-task-")+100)
	n, ok := ParseVMName(TaskVMName("r/1"))
	must.True(t, ok)
	must.Eq(t, KindTask, n.Kind)
}

func TestValidPoolName(t *testing.T) {
	t.Parallel()
	must.NoError(t, ValidPoolName("macos-15_x.y"))
	must.Error(t, ValidPoolName(""))
	must.Error(t, ValidPoolName("a/b"))
	must.Error(t, ValidPoolName(strings.Repeat("a", 41)))
}
