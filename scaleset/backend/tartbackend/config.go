// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tartbackend

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// Defaults of the tart {} block.
const (
	DefaultTartPath     = "tart"
	DefaultStartTimeout = 10 * time.Minute
	DefaultStopTimeout  = 10 * time.Second
)

// DefaultRunnerCommand is the guest command that starts the runner: it
// reads the JIT config from stdin (fed by tart exec -i) into the runner's
// input variable inside the guest and runs the runner in
// ~/actions-runner, as laid out in Cirrus Labs' runner images.
var DefaultRunnerCommand = []string{
	"/bin/bash", "-lc",
	`cd "$HOME/actions-runner" && ACTIONS_RUNNER_INPUT_JITCONFIG="$(cat)" exec ./run.sh`,
}

// Config is the tart {} block of a scale set in the service's HCL config.
// Fields carry hcl:"name,optional" tags for gohcl.
type Config struct {
	// TartPath is the tart executable.
	TartPath string `hcl:"tart_path,optional"`
	// TartHome is TART_HOME for every tart command ("" = inherited).
	TartHome string `hcl:"tart_home,optional"`
	// Image is the VM image to clone (OCI reference or local VM).
	Image string `hcl:"image,optional"`
	// PoolSize is the number of warm VMs kept booted.
	PoolSize int `hcl:"pool_size,optional"`
	// Mode is "boot" (default: pool_size booted VMs) or "resume" (also a
	// suspended template per slot, cloned and resumed per runner; see
	// tart.ModeResume).
	Mode string `hcl:"mode,optional"`
	// ResumeCommand runs in a resumed guest before the runner (the clock
	// sync); unset takes tart.DefaultResumeCommand, [] runs none.
	ResumeCommand []string `hcl:"resume_command,optional"`
	// MaxVMs is the host's VM slot count.
	MaxVMs int `hcl:"max_vms,optional"`
	// CPU, Memory (MiB) and DiskSize (GB) are applied with tart set; 0
	// keeps the image's values.
	CPU      int `hcl:"cpu,optional"`
	Memory   int `hcl:"memory,optional"`
	DiskSize int `hcl:"disk_size,optional"`
	// Network is nat (default), softnet or bridged.
	Network string `hcl:"network,optional"`
	// BridgedInterfaces are host interfaces for network = "bridged".
	BridgedInterfaces []string `hcl:"bridged_interfaces,optional"`
	// SoftnetAllow are CIDRs the guest may reach with network = "softnet".
	SoftnetAllow []string `hcl:"softnet_allow,optional"`
	// RunnerCommand is the guest argv that starts the runner; it gets the
	// JIT config on stdin.
	RunnerCommand []string `hcl:"runner_command,optional"`
	// StartTimeout bounds claiming or booting a VM (pull included).
	StartTimeout string `hcl:"start_timeout,optional"`
	// StopTimeout is passed to tart stop.
	StopTimeout string `hcl:"stop_timeout,optional"`
	// MACSeed derives the per-slot MAC addresses (default: host name).
	MACSeed string `hcl:"mac_seed,optional"`

	// Parsed by Validate.
	StartTimeoutDuration time.Duration
	StopTimeoutDuration  time.Duration
}

// Validate applies defaults and returns a joined error naming each bad field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.TartPath == "" {
		c.TartPath = DefaultTartPath
	}
	if c.MaxVMs == 0 {
		c.MaxVMs = tart.DefaultMaxVMs
	}
	if c.Network == "" {
		c.Network = string(tart.NetworkNAT)
	}
	if len(c.RunnerCommand) == 0 {
		c.RunnerCommand = append([]string(nil), DefaultRunnerCommand...)
	}
	if c.MACSeed == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "localhost"
		}
		c.MACSeed = h
	}
	if c.Mode == "" {
		c.Mode = string(tart.ModeBoot)
	}
	if c.Mode != string(tart.ModeBoot) && c.Mode != string(tart.ModeResume) {
		bad("mode: must be %q or %q, got %q", tart.ModeBoot, tart.ModeResume, c.Mode)
	}
	if c.ResumeCommand == nil {
		c.ResumeCommand = append([]string(nil), tart.DefaultResumeCommand...)
	}
	if c.Image == "" {
		bad("image: must be set (an OCI reference such as ghcr.io/cirruslabs/macos-sequoia-base:latest, or a local VM)")
	}
	if c.PoolSize < 0 {
		bad("pool_size: must be >= 0, got %d", c.PoolSize)
	}
	if c.MaxVMs < 0 {
		bad("max_vms: must be >= 1, got %d", c.MaxVMs)
	}
	if c.PoolSize > c.MaxVMs && c.MaxVMs > 0 {
		bad("pool_size: %d is more than max_vms %d", c.PoolSize, c.MaxVMs)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"cpu", c.CPU}, {"memory", c.Memory}, {"disk_size", c.DiskSize}} {
		if f.v < 0 {
			bad("%s: must be >= 0, got %d", f.name, f.v)
		}
	}
	if _, err := c.network().Args(); err != nil {
		bad("%w", err)
	}
	if c.RunnerCommand[0] == "" {
		bad("runner_command: the program (first element) is empty")
	}
	c.StartTimeoutDuration = config.DurationField(&errs, "start_timeout", c.StartTimeout, DefaultStartTimeout)
	c.StopTimeoutDuration = config.DurationField(&errs, "stop_timeout", c.StopTimeout, DefaultStopTimeout)
	return errors.Join(errs...)
}

func (c *Config) network() tart.Network {
	return tart.Network{Mode: tart.NetworkMode(c.Network), BridgedInterfaces: c.BridgedInterfaces, SoftnetAllow: c.SoftnetAllow}
}

// pools is the backend's pool: pool_size warm VMs and, in resume mode,
// the templates (none when neither is asked for).
func (c *Config) pools(name string) []tart.PoolConfig {
	if c.PoolSize == 0 && c.Mode != string(tart.ModeResume) {
		return nil
	}
	return []tart.PoolConfig{{Name: name, Size: c.PoolSize, Mode: tart.PoolMode(c.Mode), ResumeCommand: c.ResumeCommand, VMSpec: c.spec(name)}}
}

func (c *Config) spec(pool string) tart.VMSpec {
	return tart.VMSpec{Pool: pool, Image: c.Image, CPU: c.CPU, MemoryMiB: c.Memory, DiskSizeGB: c.DiskSize,
		Run: tart.RunOptions{Network: c.network()}}
}
