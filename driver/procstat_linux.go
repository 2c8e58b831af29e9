// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

// sampleProcs reads /proc/<pid>/stat for each live pid.
func sampleProcs(pids []int) []procSample {
	page := uint64(os.Getpagesize())
	var out []procSample
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name, which may hold spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0] is field 3 (state); utime=14, stime=15, rss=24.
		if len(f) < 22 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		rss, _ := strconv.ParseUint(f[21], 10, 64)
		out = append(out, procSample{user: ut / clockTicks, system: st / clockTicks, rss: rss * page})
	}
	return out
}
