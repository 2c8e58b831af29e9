// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
)

// parseValid parses and validates src as run does before the backends.
func parseValid(t *testing.T, src string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(`github_config_url = "https://github.com/a"
`+src), "t.hcl")
	must.NoError(t, err)
	must.NoError(t, c.ResolveSecrets(func(k string) string {
		if k == config.EnvPrefix+"GITHUB_TOKEN" {
			return testPAT
		}
		return ""
	}))
	must.NoError(t, c.Validate())
	return c
}

// TestValidateBackends_errorsNameFields: each backend block is decoded by
// its own package, and its errors name the scale set, the block and the
// field, as config.Validate named them when it decoded the blocks.
func TestValidateBackends_errorsNameFields(t *testing.T) {
	cases := []struct {
		name, hcl string
		want      []string
	}{
		{"docker memory and host", `scale_set "x" {
  backend = "docker"
  docker {
    memory      = "lots"
    docker_host = "/var/run/docker.sock"
  }
}`, []string{`scale_set "x": docker: memory: "lots" is not a size`, `docker_host: "/var/run/docker.sock" must be a URL`}},
		{"nomad durations", `scale_set "y" {
  backend = "nomad"
  nomad {
    job_id        = "runner"
    blocking_wait = "1h"
    startup_timeout = "soon"
  }
}`, []string{`scale_set "y": nomad: `, `blocking_wait: 1h0m0s is above Nomad's maximum of 5m`, `startup_timeout: must be a positive duration like "30s", got "soon"`}},
		{"tart duration", `scale_set "z" {
  backend = "tart"
  tart {
    image        = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
    stop_timeout = "-1s"
  }
}`, []string{`scale_set "z": tart: `, `stop_timeout: must be a positive duration like "30s", got "-1s"`}},
		{"unknown attribute in a block", `scale_set "w" {
  backend = "docker"
  docker {
    imagee = "x"
  }
}`, []string{`scale_set "w": docker: `, `t.hcl:5,5-11: Unsupported argument; An argument named "imagee" is not expected here`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateBackends(parseValid(t, tc.hcl))
			for _, w := range tc.want {
				must.ErrorContains(t, err, w)
			}
		})
	}
}

// TestDecodeBackend_defaultsAndValues: a missing block takes the backend's
// defaults; a block a program built (Value) is validated as given; a
// Value of the wrong type is refused, naming both types.
func TestDecodeBackend_defaultsAndValues(t *testing.T) {
	c := parseValid(t, `scale_set "x" {
  backend = "docker"
}`)
	must.NoError(t, ValidateBackends(c))
	bc, err := DecodeBackend(c.ScaleSets[0])
	must.NoError(t, err)
	must.NotNil(t, bc.Docker)
	must.Nil(t, bc.Tart)
	must.Nil(t, bc.Nomad)
	must.NotEq(t, "", bc.Docker.Image, must.Sprint("dockerexec's default image applied"))

	given := &nomadbackend.Config{JobID: "runner", PurgeGracePeriod: "2s"}
	ss := &config.ScaleSet{Name: "n", Backend: config.BackendNomad, Nomad: &config.BackendBlock{Value: given}}
	bc, err = DecodeBackend(ss)
	must.NoError(t, err)
	must.True(t, bc.Nomad == given)
	must.Eq(t, "2s", bc.Nomad.PurgeGrace.String())

	ss.Nomad.Value = &dockerbackend.Config{}
	_, err = DecodeBackend(ss)
	must.ErrorContains(t, err, "nomad: the block holds a *dockerbackend.Config, not a *nomadbackend.Config")
}
