// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// Defaults of the plugin and task config. They appear in the schemas (so
// Nomad fills them in) and in Validate (for configs built in Go or an empty
// plugin block); nowhere else.
const (
	defaultTartPath          = "tart"
	defaultMaxVMs            = tart.DefaultMaxVMs
	defaultGCInterval        = 5 * time.Minute
	defaultGCGracePeriod     = 15 * time.Minute
	defaultSlotWaitTimeout   = time.Minute
	defaultBootTimeout       = 5 * time.Minute
	defaultVMStopTimeout     = 10 * time.Second
	defaultAgentPollInterval = time.Second
	defaultPullTimeout       = 30 * time.Minute
	defaultPullPolicy        = pullIfNotPresent
	defaultNetworkMode       = string(tart.NetworkNAT)
)

// Pull policies of a task's image.
const (
	pullIfNotPresent = "if_not_present"
	pullAlways       = "always"
	pullNever        = "never"
)

// PluginConfig is the agent's plugin "nomad-driver-tart" { config { } }.
type PluginConfig struct {
	// TartPath is the tart binary: a name looked up on PATH or a path.
	TartPath string `codec:"tart_path"`
	// TartHome is TART_HOME for every tart command; empty inherits the
	// agent's TART_HOME (else ~/.tart).
	TartHome string `codec:"tart_home"`
	// DataDir holds the per-task supervisor state; empty means
	// <tart home>/nomad-driver-tart.
	DataDir string `codec:"data_dir"`
	// MaxVMs is how many VMs of ours may run at once (macOS allows two).
	MaxVMs int `codec:"max_vms"`
	// MACSeed derives the per-slot MAC addresses; empty means the host name.
	MACSeed string `codec:"mac_seed"`
	// DefaultCPU and DefaultMemory (MiB) apply to tasks and pools that do
	// not set their own; 0 keeps the image's values.
	DefaultCPU    int `codec:"default_cpu"`
	DefaultMemory int `codec:"default_memory"`
	// GCInterval is the period of the orphaned-VM reconcile; GCGracePeriod
	// is how old an unreferenced VM of ours must be before it is deleted.
	GCInterval    time.Duration `codec:"gc_interval"`
	GCGracePeriod time.Duration `codec:"gc_grace_period"`
	// SlotWaitTimeout bounds how long StartTask waits for a free VM slot
	// before failing with a recoverable error.
	SlotWaitTimeout time.Duration `codec:"slot_wait_timeout"`
	// BootTimeout bounds clone, boot and guest-agent readiness of one VM.
	BootTimeout time.Duration `codec:"boot_timeout"`
	// VMStopTimeout is passed to tart stop before a VM is deleted.
	VMStopTimeout time.Duration `codec:"vm_stop_timeout"`
	// AgentPollInterval is how often the guest agent is probed while a VM
	// boots.
	AgentPollInterval time.Duration `codec:"agent_poll_interval"`
	// AllowHostDirs lets tasks share absolute host paths outside their task
	// directory with the VM.
	AllowHostDirs bool `codec:"allow_host_dirs"`
	// Pools are the warm pools.
	Pools []PoolConfig `codec:"pool"`
}

// PoolConfig is one pool block: Size VMs of Image kept booted. The block
// is unlabeled (pool { name = "macos" ... }); the name is an attribute, so
// a labeled pool "macos" { } is rejected by the schema.
type PoolConfig struct {
	Name     string `codec:"name"`
	Image    string `codec:"image"`
	Size     int    `codec:"size"`
	CPU      int    `codec:"cpu"`
	Memory   int    `codec:"memory"`
	DiskSize int    `codec:"disk_size"`
	// Mode is "boot" (Size booted VMs) or "resume" (also a suspended
	// template per slot, cloned and resumed per task; tart.ModeResume).
	Mode string `codec:"mode"`
	// ResumeCommand runs in a resumed guest before the task (the clock
	// sync); nil takes tart.DefaultResumeCommand, [] runs none.
	ResumeCommand []string `codec:"resume_command"`
}

// Validate applies defaults, then checks every field and returns all
// problems as one line (fieldErrors), each naming its field.
func (c *PluginConfig) Validate() error {
	if c.TartPath == "" {
		c.TartPath = defaultTartPath
	}
	if c.MaxVMs == 0 {
		c.MaxVMs = defaultMaxVMs
	}
	setDuration(&c.GCInterval, defaultGCInterval)
	setDuration(&c.GCGracePeriod, defaultGCGracePeriod)
	setDuration(&c.SlotWaitTimeout, defaultSlotWaitTimeout)
	setDuration(&c.BootTimeout, defaultBootTimeout)
	setDuration(&c.VMStopTimeout, defaultVMStopTimeout)
	setDuration(&c.AgentPollInterval, defaultAgentPollInterval)
	var errs []error
	if c.MaxVMs < 1 {
		errs = append(errs, fmt.Errorf("max_vms = %d must be at least 1", c.MaxVMs))
	}
	errs = appendNegative(errs, "default_cpu", c.DefaultCPU)
	errs = appendNegative(errs, "default_memory", c.DefaultMemory)
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"gc_interval", c.GCInterval}, {"gc_grace_period", c.GCGracePeriod}, {"slot_wait_timeout", c.SlotWaitTimeout},
		{"boot_timeout", c.BootTimeout}, {"vm_stop_timeout", c.VMStopTimeout}, {"agent_poll_interval", c.AgentPollInterval}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s = %q must not be negative", f.name, f.d))
		}
	}
	if c.GCGracePeriod < c.BootTimeout {
		errs = append(errs, fmt.Errorf("gc_grace_period = %q must be at least boot_timeout (%s), or booting VMs could be collected", c.GCGracePeriod, c.BootTimeout))
	}
	seen := map[string]bool{}
	for i := range c.Pools {
		p := &c.Pools[i]
		if p.CPU == 0 {
			p.CPU = c.DefaultCPU
		}
		if p.Memory == 0 {
			p.Memory = c.DefaultMemory
		}
		field := fmt.Sprintf("pool[%d]", i)
		if err := poolNameError(field+".name", p.Name); err != nil {
			errs = append(errs, err)
		} else if seen[p.Name] {
			errs = append(errs, fmt.Errorf("%s.name = %q is a duplicate: pool names must be unique", field, p.Name))
		}
		seen[p.Name] = true
		if p.Image == "" {
			errs = append(errs, fmt.Errorf("%s.image must not be empty", field))
		}
		errs = appendNegative(errs, field+".size", p.Size)
		errs = appendNegative(errs, field+".cpu", p.CPU)
		errs = appendNegative(errs, field+".memory", p.Memory)
		errs = appendNegative(errs, field+".disk_size", p.DiskSize)
		if p.Mode == "" {
			p.Mode = string(tart.ModeBoot)
		}
		if p.Mode != string(tart.ModeBoot) && p.Mode != string(tart.ModeResume) {
			errs = append(errs, fmt.Errorf("%s.mode = %q must be %q or %q", field, p.Mode, tart.ModeBoot, tart.ModeResume))
		}
		if p.ResumeCommand == nil {
			p.ResumeCommand = append([]string(nil), tart.DefaultResumeCommand...)
		}
	}
	return joinFieldErrors(errs)
}

// fieldErrors are every problem found in a config, each naming its field
// and value. They read as one line, joined by "; ": Nomad shows them in a
// one-line task event ("Driver Failure: ...") or agent log line.
type fieldErrors []error

func (e fieldErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e fieldErrors) Unwrap() []error { return e }

// joinFieldErrors is nil for no errors, else a fieldErrors.
func joinFieldErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fieldErrors(errs)
}

// appendNegative adds an error when a number field is negative.
func appendNegative(errs []error, field string, v int) []error {
	if v < 0 {
		return append(errs, fmt.Errorf("%s = %d must not be negative", field, v))
	}
	return errs
}

// poolNameError checks a pool name (tart.ValidPoolName) and says what is
// allowed.
func poolNameError(field, name string) error {
	if name == "" {
		return fmt.Errorf("%s must not be empty", field)
	}
	if tart.ValidPoolName(name) != nil {
		return fmt.Errorf("%s = %q is not a valid pool name: use at most 40 letters, digits, '-', '_' or '.'", field, name)
	}
	return nil
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// SharedDir is one shared_dir block: a host directory the guest sees under
// /Volumes/My Shared Files/<name> (macOS guests).
type SharedDir struct {
	// HostPath is relative to the task directory, or absolute when the
	// plugin allows host dirs.
	HostPath string `codec:"host_path"`
	// Name is the share's name in the guest; empty uses the directory name.
	Name     string `codec:"name"`
	ReadOnly bool   `codec:"read_only"`
}

// TaskConfig is a task's config { } block.
type TaskConfig struct {
	// Image is the Tart VM image (OCI reference or local VM name).
	Image string `codec:"image"`
	// Pool names the warm pool to claim from; empty matches by image and
	// resources.
	Pool string `codec:"pool"`
	// CPU, Memory (MiB) and DiskSize (GB); 0 uses the plugin default or
	// the image's value.
	CPU      int `codec:"cpu"`
	Memory   int `codec:"memory"`
	DiskSize int `codec:"disk_size"`
	// Command and Args are run in the guest through the guest agent.
	Command string   `codec:"command"`
	Args    []string `codec:"args"`
	// StdinFile is a file in the task directory (e.g. local/payload.json)
	// handed to the guest command on stdin.
	StdinFile  string      `codec:"stdin_file"`
	SharedDirs []SharedDir `codec:"shared_dir"`
	// NetworkMode is nat, softnet, bridged or host.
	NetworkMode       string   `codec:"network_mode"`
	BridgedInterfaces []string `codec:"bridged_interfaces"`
	SoftnetAllow      []string `codec:"softnet_allow"`
	SoftnetBlock      []string `codec:"softnet_block"`
	SoftnetExpose     []string `codec:"softnet_expose"`
	// PullPolicy is if_not_present, always or never.
	PullPolicy  string        `codec:"pull_policy"`
	PullTimeout time.Duration `codec:"pull_timeout"`
}

// Validate applies defaults, then checks every field and returns all
// problems as one line (fieldErrors), each naming its field and, for a
// choice, the allowed values.
func (c *TaskConfig) Validate() error {
	if c.NetworkMode == "" {
		c.NetworkMode = defaultNetworkMode
	}
	if c.PullPolicy == "" {
		c.PullPolicy = defaultPullPolicy
	}
	if c.PullTimeout == 0 {
		c.PullTimeout = defaultPullTimeout
	}
	var errs []error
	if c.Image == "" {
		errs = append(errs, errors.New("image must not be empty"))
	}
	if strings.TrimSpace(c.Command) == "" {
		errs = append(errs, errors.New("command must not be empty (the program run in the guest)"))
	}
	errs = appendNegative(errs, "cpu", c.CPU)
	errs = appendNegative(errs, "memory", c.Memory)
	errs = appendNegative(errs, "disk_size", c.DiskSize)
	if c.Pool != "" {
		if err := poolNameError("pool", c.Pool); err != nil {
			errs = append(errs, err)
		}
	}
	switch c.PullPolicy {
	case pullIfNotPresent, pullAlways, pullNever:
	default:
		errs = append(errs, fmt.Errorf("pull_policy = %q is not one of %q, %q, %q", c.PullPolicy, pullIfNotPresent, pullAlways, pullNever))
	}
	if c.PullTimeout < 0 {
		errs = append(errs, fmt.Errorf("pull_timeout = %q must not be negative", c.PullTimeout))
	}
	if c.StdinFile != "" {
		if err := relativePath(c.StdinFile); err != nil {
			errs = append(errs, fmt.Errorf("stdin_file = %w", err))
		}
	}
	for i, d := range c.SharedDirs {
		if d.HostPath == "" {
			errs = append(errs, fmt.Errorf("shared_dir[%d].host_path must not be empty", i))
		}
		if d.Name != "" && !shareNameRE.MatchString(d.Name) {
			errs = append(errs, fmt.Errorf("shared_dir[%d].name = %q must use only letters, digits, '.', '_' or '-'", i, d.Name))
		}
	}
	errs = append(errs, c.networkErrors()...)
	return joinFieldErrors(errs)
}

// networkModes are the allowed network_mode values.
var networkModes = []tart.NetworkMode{tart.NetworkNAT, tart.NetworkSoftnet, tart.NetworkBridged, tart.NetworkHost}

// networkErrors checks network_mode and the options that only one mode
// takes, naming the task's fields (tart.Network.Args checks the same
// combinations in its own words; it is the backstop).
func (c *TaskConfig) networkErrors() []error {
	mode := tart.NetworkMode(c.NetworkMode)
	if !slices.Contains(networkModes, mode) {
		return []error{fmt.Errorf("network_mode = %q is not one of %q, %q, %q, %q", c.NetworkMode,
			tart.NetworkNAT, tart.NetworkSoftnet, tart.NetworkBridged, tart.NetworkHost)}
	}
	var errs []error
	switch {
	case mode == tart.NetworkBridged && len(c.BridgedInterfaces) == 0:
		errs = append(errs, errors.New(`bridged_interfaces must name at least one host interface (e.g. ["en0"]) when network_mode = "bridged"`))
	case mode != tart.NetworkBridged && len(c.BridgedInterfaces) > 0:
		errs = append(errs, fmt.Errorf(`bridged_interfaces need network_mode = "bridged", not %q`, c.NetworkMode))
	}
	if mode != tart.NetworkSoftnet && len(c.SoftnetAllow)+len(c.SoftnetBlock)+len(c.SoftnetExpose) > 0 {
		errs = append(errs, fmt.Errorf(`softnet_allow, softnet_block and softnet_expose need network_mode = "softnet", not %q`, c.NetworkMode))
	}
	if len(errs) == 0 {
		if _, err := c.network().Args(); err != nil {
			errs = append(errs, fmt.Errorf("network_mode = %q: %w", c.NetworkMode, err))
		}
	}
	return errs
}

var shareNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// relativePath rejects absolute paths and paths leaving their base.
func relativePath(p string) error {
	if filepath.IsAbs(p) {
		return fmt.Errorf("%q must be relative to the task directory", p)
	}
	if c := filepath.Clean(p); c == ".." || strings.HasPrefix(c, "../") {
		return fmt.Errorf("%q leaves the task directory", p)
	}
	return nil
}

func (c *TaskConfig) network() tart.Network {
	return tart.Network{
		Mode:              tart.NetworkMode(c.NetworkMode),
		BridgedInterfaces: c.BridgedInterfaces,
		SoftnetAllow:      c.SoftnetAllow,
		SoftnetBlock:      c.SoftnetBlock,
		SoftnetExpose:     c.SoftnetExpose,
	}
}

func attr(name, typ string, required bool) *hclspec.Spec { return hclspec.Attr(name, typ, required) }

func quoted(s string) string { return strconv.Quote(s) }

// withDefault wraps primary in a default spec whose literal is expr (HCL
// expression source, so strings are quoted).
func withDefault(primary *hclspec.Spec, expr string) *hclspec.Spec {
	return hclspec.Default(primary, hclspec.Literal(expr))
}

// pluginConfigSpec is the schema of PluginConfig.
var pluginConfigSpec = hclspec.Object(map[string]*hclspec.Spec{
	"tart_path":           withDefault(attr("tart_path", "string", false), quoted(defaultTartPath)),
	"tart_home":           attr("tart_home", "string", false),
	"data_dir":            attr("data_dir", "string", false),
	"max_vms":             withDefault(attr("max_vms", "number", false), strconv.Itoa(defaultMaxVMs)),
	"mac_seed":            attr("mac_seed", "string", false),
	"default_cpu":         attr("default_cpu", "number", false),
	"default_memory":      attr("default_memory", "number", false),
	"gc_interval":         withDefault(attr("gc_interval", "string", false), quoted(defaultGCInterval.String())),
	"gc_grace_period":     withDefault(attr("gc_grace_period", "string", false), quoted(defaultGCGracePeriod.String())),
	"slot_wait_timeout":   withDefault(attr("slot_wait_timeout", "string", false), quoted(defaultSlotWaitTimeout.String())),
	"boot_timeout":        withDefault(attr("boot_timeout", "string", false), quoted(defaultBootTimeout.String())),
	"vm_stop_timeout":     withDefault(attr("vm_stop_timeout", "string", false), quoted(defaultVMStopTimeout.String())),
	"agent_poll_interval": withDefault(attr("agent_poll_interval", "string", false), quoted(defaultAgentPollInterval.String())),
	"allow_host_dirs":     withDefault(attr("allow_host_dirs", "bool", false), "false"),
	"pool": hclspec.BlockList("pool", hclspec.Object(map[string]*hclspec.Spec{
		"name":           attr("name", "string", true),
		"image":          attr("image", "string", true),
		"size":           withDefault(attr("size", "number", false), "1"),
		"cpu":            attr("cpu", "number", false),
		"memory":         attr("memory", "number", false),
		"disk_size":      attr("disk_size", "number", false),
		"mode":           withDefault(attr("mode", "string", false), quoted(string(tart.ModeBoot))),
		"resume_command": attr("resume_command", "list(string)", false),
	})),
})

// taskConfigSpec is the schema of TaskConfig.
var taskConfigSpec = hclspec.Object(map[string]*hclspec.Spec{
	"image":      attr("image", "string", true),
	"pool":       attr("pool", "string", false),
	"cpu":        attr("cpu", "number", false),
	"memory":     attr("memory", "number", false),
	"disk_size":  attr("disk_size", "number", false),
	"command":    attr("command", "string", true),
	"args":       attr("args", "list(string)", false),
	"stdin_file": attr("stdin_file", "string", false),
	"shared_dir": hclspec.BlockList("shared_dir", hclspec.Object(map[string]*hclspec.Spec{
		"host_path": attr("host_path", "string", true),
		"name":      attr("name", "string", false),
		"read_only": withDefault(attr("read_only", "bool", false), "false"),
	})),
	"network_mode":       withDefault(attr("network_mode", "string", false), quoted(defaultNetworkMode)),
	"bridged_interfaces": attr("bridged_interfaces", "list(string)", false),
	"softnet_allow":      attr("softnet_allow", "list(string)", false),
	"softnet_block":      attr("softnet_block", "list(string)", false),
	"softnet_expose":     attr("softnet_expose", "list(string)", false),
	"pull_policy":        withDefault(attr("pull_policy", "string", false), quoted(defaultPullPolicy)),
	"pull_timeout":       withDefault(attr("pull_timeout", "string", false), quoted(defaultPullTimeout.String())),
})

// ConfigSchema is the schema of the agent's plugin config block.
func (d *Driver) ConfigSchema() *hclspec.Spec { return pluginConfigSpec }

// TaskConfigSchema is the schema of a task's config block.
func (d *Driver) TaskConfigSchema() *hclspec.Spec { return taskConfigSpec }
