// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package bytesize

import (
	"math"
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
		{name: "zero", in: 0, want: "0 B"},
		{name: "bytes", in: 1023, want: "1023 B"},
		{name: "one_kib", in: 1024, want: "1.0 KiB"},
		{name: "fraction", in: 1536, want: "1.5 KiB"},
		{name: "carry", in: 1024*1024 - 1, want: "1.0 MiB"},
		{name: "gib", in: 5 * 1024 * 1024 * 1024, want: "5.0 GiB"},
		{name: "max", in: math.MaxUint64, want: "16.0 EiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			must.EqOp(t, tc.want, FormatBytes(tc.in))
		})
	}
}
