// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testutil

import (
	"net"
	"testing"
)

// FreeLoopbackAddr returns a 127.0.0.1 address with a port that was free a
// moment ago, for a process the test starts that must be told where to
// listen (a port the kernel picks cannot be learned from another process).
func FreeLoopbackAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testutil: find a free loopback port: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("testutil: release the free loopback port: %v", err)
	}
	return addr
}
