// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package dockerexec

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"regexp"
	"strings"
	"time"
)

// Defaults applied by Config.Validate.
const (
	// DefaultImage is the official GitHub Actions runner image.
	DefaultImage = "ghcr.io/actions/actions-runner:latest"
	// DefaultRunnerCommand is the runner's start script in DefaultImage.
	DefaultRunnerCommand = "/home/runner/run.sh"
	// DefaultJITConfigPath is where file delivery puts the JIT config inside
	// the container. "/" exists in every image, so no image layout is
	// assumed.
	DefaultJITConfigPath = "/.nomad-gha-jitconfig"
	// DefaultShell runs the file-delivery wrapper. It uses only POSIX shell
	// built-ins, so any sh works.
	DefaultShell = "/bin/sh"
	// DefaultSharedVolumePath is where the shared volume is mounted when
	// only its name is configured: the conventional hosted tool cache.
	DefaultSharedVolumePath = "/opt/hostedtoolcache"
	// DefaultReconcileInterval is how often RunReconciler looks for exited
	// runner containers.
	DefaultReconcileInterval = time.Minute
)

// JITConfigEnv is the variable the actions runner reads its JIT config from
// (the runner maps ACTIONS_RUNNER_INPUT_<NAME> to --<name>).
const JITConfigEnv = "ACTIONS_RUNNER_INPUT_JITCONFIG"

// Labels set on every container and volume this package creates. Their
// values identify the service instance, the scale set and the runner, so a
// restarted service finds its containers again.
const (
	LabelPrefix   = "io.github.tartnomad.dockerexec."
	LabelInstance = LabelPrefix + "instance"
	LabelScaleSet = LabelPrefix + "scale-set"
	LabelRunner   = LabelPrefix + "runner"
)

// PullPolicy says when the runner image is pulled.
type PullPolicy string

// Pull policies.
const (
	// PullMissing pulls the image only when the engine does not have it.
	PullMissing PullPolicy = "missing"
	// PullAlways pulls once per Executor (on the first start or
	// EnsureImage), so a moving tag such as :latest is refreshed at every
	// service start without a registry round trip per runner.
	PullAlways PullPolicy = "always"
	// PullNever never pulls: a missing image is an error.
	PullNever PullPolicy = "never"
)

// Delivery says how the JIT config reaches the runner process.
type Delivery string

// JIT config deliveries.
const (
	// DeliveryFile copies the JIT config into the created container as a
	// file readable only by the container user; a shell wrapper moves it into
	// the runner's environment, empties the file and execs the runner. The
	// secret never appears in the container's config (docker inspect, the
	// engine's config.v2.json on disk). The default.
	DeliveryFile Delivery = "file"
	// DeliveryEnv sets ACTIONS_RUNNER_INPUT_JITCONFIG in the container's
	// environment, as GitHub's dockerscaleset example and ARC do. Use it for
	// images without a POSIX shell.
	DeliveryEnv Delivery = "env"
)

// Config configures an Executor. Validate applies the defaults; the README's
// options table documents every field under its snake_case name, which is
// also the name errors use.
type Config struct {
	// ScaleSet is the scale set name, stored in a label (scale_set).
	ScaleSet string
	// InstanceID identifies this service instance in a label (instance_id).
	// It must be stable across restarts so leftovers are found again;
	// default: the host name.
	InstanceID string

	Image      string     // image
	PullPolicy PullPolicy // pull_policy
	// RemovePulledImage removes Image at Cleanup when this executor pulled
	// it and no runner of ours still runs (remove_pulled_image). Images it
	// found present are never removed.
	RemovePulledImage bool
	// Command is the runner start command (command). Default:
	// DefaultRunnerCommand.
	Command []string
	// User runs the container process (user); empty keeps the image's USER.
	User        string
	NetworkMode string  // network_mode; empty: the engine's default
	CPUs        float64 // cpus; 0: unlimited
	MemoryBytes int64   // memory; 0: unlimited
	// SharedVolume is a named volume mounted into every runner
	// (shared_volume), at SharedVolumePath (shared_volume_path).
	SharedVolume     string
	SharedVolumePath string
	// Env is extra environment for every runner (env).
	Env map[string]string
	// Labels are extra container labels (container_labels); keys under LabelPrefix are
	// reserved.
	Labels map[string]string

	JITConfigDelivery Delivery // jit_config_delivery
	JITConfigPath     string   // jit_config_path (file delivery)
	Shell             string   // shell (file delivery)

	// ReconcileInterval is RunReconciler's period (reconcile_interval).
	ReconcileInterval time.Duration
}

// validName is Docker's rule for container and volume names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// dockerMinMemory is the smallest memory limit the engine accepts.
const dockerMinMemory = 6 * 1024 * 1024

// Validate applies defaults, then returns a joined error naming every bad
// field by its snake_case option name.
func (c *Config) Validate() error {
	c.applyDefaults()
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(c.ScaleSet) == "" {
		bad("scale_set", "must not be empty")
	}
	if strings.TrimSpace(c.InstanceID) == "" {
		bad("instance_id", "must not be empty (and the host name is unknown)")
	}
	if strings.TrimSpace(c.Image) == "" || strings.ContainsAny(c.Image, " \t\n") {
		bad("image", "%q is not an image reference", c.Image)
	}
	switch c.PullPolicy {
	case PullMissing, PullAlways, PullNever:
	default:
		bad("pull_policy", "%q is not one of missing, always, never", c.PullPolicy)
	}
	if len(c.Command) == 0 || strings.TrimSpace(c.Command[0]) == "" {
		bad("command", "must name the runner's start command")
	}
	if math.IsNaN(c.CPUs) || math.IsInf(c.CPUs, 0) || c.CPUs < 0 {
		bad("cpus", "%v must be a positive number of CPUs, or 0 for no limit", c.CPUs)
	}
	if c.MemoryBytes < 0 || (c.MemoryBytes > 0 && c.MemoryBytes < dockerMinMemory) {
		bad("memory", "%d bytes is below Docker's minimum of 6 MiB (0 means no limit)", c.MemoryBytes)
	}
	if strings.ContainsAny(c.NetworkMode, " \t\n") {
		bad("network_mode", "%q is not a network mode", c.NetworkMode)
	}
	if c.SharedVolume != "" {
		if !validName.MatchString(c.SharedVolume) {
			bad("shared_volume", "%q is not a valid volume name", c.SharedVolume)
		}
		if !path.IsAbs(c.SharedVolumePath) || path.Clean(c.SharedVolumePath) == "/" {
			bad("shared_volume_path", "%q must be an absolute path below /", c.SharedVolumePath)
		}
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			bad("env", "%q is not a variable name", k)
		}
		if k == JITConfigEnv {
			bad("env", "%s is set by the executor, not by configuration", JITConfigEnv)
		}
	}
	for k := range c.Labels {
		if strings.HasPrefix(k, LabelPrefix) {
			bad("container_labels", "%q uses the reserved prefix %s", k, LabelPrefix)
		}
	}
	switch c.JITConfigDelivery {
	case DeliveryFile:
		if !path.IsAbs(c.JITConfigPath) || path.Dir(c.JITConfigPath) == c.JITConfigPath {
			bad("jit_config_path", "%q must be an absolute file path", c.JITConfigPath)
		}
		if strings.ContainsAny(c.JITConfigPath, "'\"\\$`\n") {
			bad("jit_config_path", "%q must not contain quotes, backslashes, $ or backticks", c.JITConfigPath)
		}
		if !path.IsAbs(c.Shell) {
			bad("shell", "%q must be an absolute path", c.Shell)
		}
	case DeliveryEnv:
	default:
		bad("jit_config_delivery", "%q is not one of file, env", c.JITConfigDelivery)
	}
	if c.ReconcileInterval < 0 {
		bad("reconcile_interval", "%s must be positive", c.ReconcileInterval)
	}
	return errors.Join(errs...)
}

func (c *Config) applyDefaults() {
	if c.InstanceID == "" {
		if h, err := os.Hostname(); err == nil {
			c.InstanceID = h
		}
	}
	if c.Image == "" {
		c.Image = DefaultImage
	}
	if c.PullPolicy == "" {
		c.PullPolicy = PullMissing
	}
	if len(c.Command) == 0 {
		c.Command = []string{DefaultRunnerCommand}
	}
	if c.SharedVolume != "" && c.SharedVolumePath == "" {
		c.SharedVolumePath = DefaultSharedVolumePath
	}
	if c.JITConfigDelivery == "" {
		c.JITConfigDelivery = DeliveryFile
	}
	if c.JITConfigPath == "" {
		c.JITConfigPath = DefaultJITConfigPath
	}
	if c.Shell == "" {
		c.Shell = DefaultShell
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
}

// ownLabels are the labels that select this instance's containers for its
// scale set.
func (c *Config) ownLabels() map[string]string {
	return map[string]string{LabelInstance: c.InstanceID, LabelScaleSet: c.ScaleSet}
}
