// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"testing"

	"github.com/shoenig/test/must"
)

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   uint64
		want string
	}{
		{"zero", 0, "0 B"},
		{"bytes", 1023, "1023 B"},
		{"one kib", 1024, "1.0 KiB"},
		{"fraction", 1536, "1.5 KiB"},
		{"mib", 5 * 1024 * 1024, "5.0 MiB"},
		{"gib", 1288490189, "1.2 GiB"},
		{"decimal 25 GB", 25_000_000_000, "23.3 GiB"},
		{"rounding up a unit", 1024*1024 - 1, "1.0 MiB"},
		{"tib", 3 << 40, "3.0 TiB"},
		{"max", ^uint64(0), "16.0 EiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			must.Eq(t, tc.want, formatBytes(tc.in))
		})
	}
}
