// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package check

import (
	"context"
	"fmt"

	"github.com/actions/scaleset"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/tartbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// Probes build the probes of one scale set. A nil field gets the default,
// which talks to the real service.
type Probes struct {
	GitHub func(cfg *config.Config, ss *config.ScaleSet) (GitHub, error)
	Docker func(c *dockerbackend.Config) (Docker, error)
	Nomad  func(c *nomadbackend.Config, scaleSetName string) (Nomad, error)
	Tart   func(c *tartbackend.Config) (Tart, error)
}

func (p Probes) withDefaults() Probes {
	if p.GitHub == nil {
		p.GitHub = func(cfg *config.Config, ss *config.ScaleSet) (GitHub, error) {
			// The retries run would use (Validate set both).
			return service.NewClient(cfg, ss,
				scaleset.WithRetryMax(*cfg.GitHubHTTPRetryMax), scaleset.WithRetryWaitMax(cfg.GitHubHTTPRetryWaitMaxDuration))
		}
	}
	if p.Docker == nil {
		p.Docker = newDockerProbe
	}
	if p.Nomad == nil {
		p.Nomad = newNomadProbe
	}
	if p.Tart == nil {
		p.Tart = func(c *tartbackend.Config) (Tart, error) {
			opts := []tart.Option{tart.WithBinary(c.TartPath)}
			if c.TartHome != "" {
				opts = append(opts, tart.WithHome(c.TartHome))
			}
			return tart.NewClient(opts...), nil
		}
	}
	return p
}

// dockerProbe is the default Docker: the engine the backend would use
// (DOCKER_HOST and friends, or docker_host).
type dockerProbe struct{ cli *client.Client }

func newDockerProbe(c *dockerbackend.Config) (Docker, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if c.DockerHost != "" {
		opts = append(opts, client.WithHost(c.DockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, err
	}
	return &dockerProbe{cli: cli}, nil
}

func (d *dockerProbe) Ping(ctx context.Context) (string, error) {
	p, err := d.cli.Ping(ctx)
	if err != nil {
		return "", err
	}
	return p.APIVersion, nil
}

func (d *dockerProbe) HasImage(ctx context.Context, ref string) (bool, error) {
	_, err := d.cli.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("inspect image %s: %w", ref, err)
}

func (d *dockerProbe) Close() error { return d.cli.Close() }
