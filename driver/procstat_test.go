// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"os"
	"testing"

	"github.com/shoenig/test/must"
)

func Test_sampleProcs_self(t *testing.T) {
	t.Parallel()
	s := sampleProcs([]int{os.Getpid(), 0x7ffffff0})
	must.Len(t, 1, s, must.Sprint("a missing pid is skipped"))
	must.Positive(t, s[0].rss)
}

func Test_psTime(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{"0:00.50": 0.5, "1:02.25": 62.25, "1:00:00": 3600, "2-01:00:00": 2*86400 + 3600} {
		must.Eq(t, want, psTime(in), must.Sprint(in))
	}
}
