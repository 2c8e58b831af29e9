// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package nomadbackend runs GitHub Actions runners for the scale-set service
// through nomad. (Skeleton: filled in by its owner.)
package nomadbackend

// Config is the nomad {} block of a scale set in the service's HCL config.
// Fields carry hcl:"name,optional" tags for gohcl.
type Config struct{}

// Validate applies defaults and returns a joined error naming each bad field.
func (c *Config) Validate() error { return nil }
