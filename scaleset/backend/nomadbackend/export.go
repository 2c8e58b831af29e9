// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend

import "github.com/hashicorp/nomad/api"

// APIConfig is the Nomad client configuration New would use (the block,
// then Nomad's environment variables, then the task API socket), for
// callers that probe Nomad without a backend (nomad-gha-scaleset check).
// Call Validate first.
func (c *Config) APIConfig(getenv func(string) string) (*api.Config, error) {
	return c.apiConfig(getenv)
}
