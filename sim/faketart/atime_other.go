// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

//go:build !linux && !darwin

package faketart

import (
	"os"
	"time"
)

// statAccessTime is unavailable here; callers fall back to the mtime.
func statAccessTime(os.FileInfo) (time.Time, bool) { return time.Time{}, false }
