// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"github.com/actions/scaleset"

	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
)

// NewClient builds the GitHub client a scale set of c uses (App
// credentials when given, else the PAT), for callers that talk to GitHub
// without running the service (nomad-gha-scaleset check). c must have
// passed ResolveSecrets and Validate.
func NewClient(c *config.Config, ss *config.ScaleSet, opts ...scaleset.HTTPOption) (*scaleset.Client, error) {
	return newClient(c, ss, opts)
}
