// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package device

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
)

// hostAttributes are the group attributes about the host that are
// available: CPU cores always; memory from sysctl (macOS) or
// /proc/meminfo (Linux); the macOS version from sw_vers on macOS. Each
// command is bounded by timeout; one that fails leaves its attribute out.
func hostAttributes(ctx context.Context, timeout time.Duration) map[string]any {
	attrs := map[string]any{"host_cpu_cores": int64(runtime.NumCPU())}
	if mib := hostMemoryMiB(ctx, timeout); mib > 0 {
		attrs["host_memory"] = sdk.Attr{Value: mib, Unit: "MiB"}
	}
	if runtime.GOOS == "darwin" {
		if v := commandLine(ctx, timeout, "sw_vers", "-productVersion"); v != "" {
			attrs["macos_version"] = v
		}
	}
	return attrs
}

// hostMemoryMiB is the host's physical memory in MiB, or 0 if unknown.
func hostMemoryMiB(ctx context.Context, timeout time.Duration) int64 {
	switch runtime.GOOS {
	case "darwin":
		n, err := strconv.ParseInt(commandLine(ctx, timeout, "sysctl", "-n", "hw.memsize"), 10, 64)
		if err != nil {
			return 0
		}
		return n >> 20
	case "linux":
		f, err := os.Open("/proc/meminfo")
		if err != nil {
			return 0
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "MemTotal:" {
				kib, err := strconv.ParseInt(fields[1], 10, 64)
				if err != nil {
					return 0
				}
				return kib >> 10
			}
		}
	}
	return 0
}

// commandLine runs name with args and returns the first line it prints,
// or "" on any failure.
func commandLine(ctx context.Context, timeout time.Duration, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return ""
	}
	return firstLine(string(out))
}

func firstLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return ""
}
