// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

//go:build !linux

package driver

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// psTimeout bounds one ps call, so a hung ps cannot stall a stats stream.
const psTimeout = 5 * time.Second

// sampleProcs asks ps (macOS and other Unixes without /proc) for the
// resident size, the user CPU time and the total CPU time of each pid
// (macOS ps has utime and time but no stime; system = time - utime).
func sampleProcs(pids []int) []procSample {
	if len(pids) == 0 {
		return nil
	}
	list := make([]string, len(pids))
	for i, p := range pids {
		list[i] = strconv.Itoa(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), psTimeout)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ps", "-o", "rss=,utime=,time=", "-p", strings.Join(list, ",")).Output()
	var res []procSample
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		kb, _ := strconv.ParseUint(f[0], 10, 64)
		user := psTime(f[1])
		res = append(res, procSample{rss: kb * 1024, user: user, system: max(psTime(f[2])-user, 0)})
	}
	return res
}
