// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

//go:build !linux

package driver

import (
	"bufio"
	"bytes"
	"os/exec"
	"strconv"
	"strings"
)

// sampleProcs asks ps (macOS and other Unixes without /proc) for the
// resident size and the user and system CPU time of each pid.
func sampleProcs(pids []int) []procSample {
	if len(pids) == 0 {
		return nil
	}
	list := make([]string, len(pids))
	for i, p := range pids {
		list[i] = strconv.Itoa(p)
	}
	out, _ := exec.Command("ps", "-o", "rss=,utime=,stime=", "-p", strings.Join(list, ",")).Output()
	var res []procSample
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		kb, _ := strconv.ParseUint(f[0], 10, 64)
		res = append(res, procSample{rss: kb * 1024, user: psTime(f[1]), system: psTime(f[2])})
	}
	return res
}

// psTime parses ps's [[dd-]hh:]mm:ss[.cc] into seconds.
func psTime(s string) float64 {
	days := 0.0
	if i := strings.IndexByte(s, '-'); i >= 0 {
		d, _ := strconv.ParseFloat(s[:i], 64)
		days, s = d, s[i+1:]
	}
	total := 0.0
	for _, part := range strings.Split(s, ":") {
		v, _ := strconv.ParseFloat(part, 64)
		total = total*60 + v
	}
	return days*86400 + total
}
