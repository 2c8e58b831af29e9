// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package bytesize formats byte counts for humans. It is shared by the
// packages that report reclaimed disk space (dockerexec, tart) so that every
// log line in the project spells sizes the same way. It imports nothing but
// the standard library.
package bytesize

import "strconv"

// units are IEC binary prefixes: disk tools (docker system df, du -h) count
// in powers of 1024 and operators compare our numbers with theirs.
var units = [...]string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// FormatBytes formats a byte count into a human-readable string: whole bytes
// below 1 KiB ("512 B"), otherwise one decimal with an IEC unit ("1.5 GiB").
func FormatBytes(b uint64) string {
	if b < 1024 {
		return strconv.FormatUint(b, 10) + " B"
	}
	v := float64(b)
	i := -1
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	// Rounding can carry into the next unit (1023.96 KiB prints as 1024.0
	// KiB otherwise).
	if v >= 1023.95 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}
