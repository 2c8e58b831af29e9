// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package dockerbackend runs GitHub Actions runners for the scale-set service
// as containers on a Docker engine, started directly by the service (a
// single host without Nomad). It is a thin adapter: the dockerexec package
// does the container work, this package maps the service's docker {} HCL
// block onto dockerexec.Config and the executor onto backend.Backend.
package dockerbackend

import (
	"errors"
	"fmt"
	"strings"

	"github.com/docker/go-units"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
)

// Config is the docker {} block of a scale set in the service's HCL config.
// Every option is documented in dockerexec/README.md; defaults are
// dockerexec's.
type Config struct {
	Image      string `hcl:"image,optional"`
	PullPolicy string `hcl:"pull_policy,optional"`
	// RemovePulledImage: see dockerexec.Config.RemovePulledImage.
	RemovePulledImage bool              `hcl:"remove_pulled_image,optional"`
	Command           []string          `hcl:"command,optional"`
	User              string            `hcl:"user,optional"`
	NetworkMode       string            `hcl:"network_mode,optional"`
	CPUs              float64           `hcl:"cpus,optional"`
	Memory            string            `hcl:"memory,optional"`
	SharedVolume      string            `hcl:"shared_volume,optional"`
	SharedVolumePath  string            `hcl:"shared_volume_path,optional"`
	Env               map[string]string `hcl:"env,optional"`
	ContainerLabels   map[string]string `hcl:"container_labels,optional"`
	// JITConfigDelivery is "file" (default) or "env"; see the README for
	// why file is the default.
	JITConfigDelivery string `hcl:"jit_config_delivery,optional"`
	JITConfigPath     string `hcl:"jit_config_path,optional"`
	Shell             string `hcl:"shell,optional"`
	// InstanceID labels this service instance's containers; it must stay
	// the same across restarts (default: the host name).
	InstanceID string `hcl:"instance_id,optional"`
	// DockerHost overrides DOCKER_HOST for this scale set.
	DockerHost string `hcl:"docker_host,optional"`

	// MemoryBytes is Memory parsed by Validate.
	MemoryBytes int64
}

// Validate applies defaults and returns a joined error naming each bad field.
func (c *Config) Validate() error {
	var errs []error
	c.MemoryBytes = 0
	if m := strings.TrimSpace(c.Memory); m != "" {
		n, err := units.RAMInBytes(m)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("memory: %q is not a size such as 512m or 4g", c.Memory))
		} else {
			c.MemoryBytes = n
		}
	}
	if c.DockerHost != "" && !strings.Contains(c.DockerHost, "://") {
		errs = append(errs, fmt.Errorf("docker_host: %q must be a URL such as unix:///var/run/docker.sock", c.DockerHost))
	}
	// The scale set name is not part of this block; a placeholder lets the
	// executor's own rules (and defaults) run now.
	ec := c.executorConfig("validate")
	if err := ec.Validate(); err != nil {
		errs = append(errs, err)
	}
	c.Image, c.PullPolicy, c.Command = ec.Image, string(ec.PullPolicy), ec.Command
	c.SharedVolumePath, c.JITConfigDelivery = ec.SharedVolumePath, string(ec.JITConfigDelivery)
	c.JITConfigPath, c.Shell, c.InstanceID = ec.JITConfigPath, ec.Shell, ec.InstanceID
	return errors.Join(errs...)
}

// executorConfig maps the block onto dockerexec.Config.
func (c *Config) executorConfig(scaleSet string) dockerexec.Config {
	return dockerexec.Config{
		ScaleSet:          scaleSet,
		InstanceID:        c.InstanceID,
		Image:             c.Image,
		PullPolicy:        dockerexec.PullPolicy(c.PullPolicy),
		RemovePulledImage: c.RemovePulledImage,
		Command:           c.Command,
		User:              c.User,
		NetworkMode:       c.NetworkMode,
		CPUs:              c.CPUs,
		MemoryBytes:       c.MemoryBytes,
		SharedVolume:      c.SharedVolume,
		SharedVolumePath:  c.SharedVolumePath,
		Env:               c.Env,
		Labels:            c.ContainerLabels,
		JITConfigDelivery: dockerexec.Delivery(c.JITConfigDelivery),
		JITConfigPath:     c.JITConfigPath,
		Shell:             c.Shell,
	}
}
