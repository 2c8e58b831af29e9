// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import "github.com/tartnomad/nomad-driver-tart/internal/bytesize"

// formatBytes formats a byte count as a human-readable binary size with one
// decimal ("512 B", "1.0 KiB", "1.2 GiB"), as used in pull progress events.
// It is the project-wide spelling of sizes (internal/bytesize), kept
// exported here because it is part of the seed API.
func formatBytes(b uint64) string { return bytesize.FormatBytes(b) }
