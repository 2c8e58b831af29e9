// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package faketart

import (
	"os"
	"syscall"
	"time"
)

// statAccessTime reads the access time, which os.FileInfo does not expose.
func statAccessTime(st os.FileInfo) (time.Time, bool) {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(s.Atimespec.Sec, s.Atimespec.Nsec), true
}
