// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import "fmt"

// FormatBytes formats a byte count as a human-readable binary size with one
// decimal ("512 B", "1.0 KiB", "1.2 GiB"), as used in pull progress events.
func FormatBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	v := float64(b) / unit
	exp := 0
	// Move up a unit while the value would print as 1024.0 or more.
	for v >= unit-0.05 && exp < 5 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
