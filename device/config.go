// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package device

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// Defaults of the plugin config; they appear in the schema and in
// Validate, nowhere else. max_vms and tart_path match the driver's.
const (
	defaultTartPath            = "tart"
	defaultMaxVMs              = tart.DefaultMaxVMs
	defaultHealthCheckInterval = 10 * time.Second
	defaultTartTimeout         = 5 * time.Second
)

// Config is the agent's plugin "nomad-device-tart" { config { } }.
type Config struct {
	// TartPath is the tart binary, as in the driver's config.
	TartPath string `codec:"tart_path"`
	// TartHome is TART_HOME; empty inherits the agent's (else ~/.tart).
	// It must be the driver's: the slot use is read from it.
	TartHome string `codec:"tart_home"`
	// MaxVMs is the number of slot instances; it must equal the driver's
	// max_vms (a difference is reported in health and the log).
	MaxVMs int `codec:"max_vms"`
	// MACSeed derives the slot MACs that tell which slot a VM holds, as
	// the driver's mac_seed; empty uses the driver's published seed, else
	// the host name.
	MACSeed string `codec:"mac_seed"`
	// HealthCheckInterval is how often tart is checked and the driver's
	// max_vms compared.
	HealthCheckInterval time.Duration `codec:"health_check_interval"`
	// TartTimeout bounds each tart command of a check.
	TartTimeout time.Duration `codec:"tart_timeout"`
}

// Validate applies defaults, then checks every field, naming it.
func (c *Config) Validate() error {
	if c.TartPath == "" {
		c.TartPath = defaultTartPath
	}
	if c.MaxVMs == 0 {
		c.MaxVMs = defaultMaxVMs
	}
	if c.HealthCheckInterval == 0 {
		c.HealthCheckInterval = defaultHealthCheckInterval
	}
	if c.TartTimeout == 0 {
		c.TartTimeout = defaultTartTimeout
	}
	var errs []error
	if c.MaxVMs < 1 {
		errs = append(errs, fmt.Errorf("max_vms = %d must be at least 1", c.MaxVMs))
	}
	if c.HealthCheckInterval < 0 {
		errs = append(errs, fmt.Errorf("health_check_interval = %q must not be negative", c.HealthCheckInterval))
	}
	if c.TartTimeout < 0 {
		errs = append(errs, fmt.Errorf("tart_timeout = %q must not be negative", c.TartTimeout))
	}
	return errors.Join(errs...)
}

func attr(name, typ string) *hclspec.Spec { return hclspec.Attr(name, typ, false) }

func withDefault(primary *hclspec.Spec, expr string) *hclspec.Spec {
	return hclspec.Default(primary, hclspec.Literal(expr))
}

// configSpec is the schema of Config.
var configSpec = hclspec.Object(map[string]*hclspec.Spec{
	"tart_path":             withDefault(attr("tart_path", "string"), strconv.Quote(defaultTartPath)),
	"tart_home":             attr("tart_home", "string"),
	"max_vms":               withDefault(attr("max_vms", "number"), strconv.Itoa(defaultMaxVMs)),
	"mac_seed":              attr("mac_seed", "string"),
	"health_check_interval": withDefault(attr("health_check_interval", "string"), strconv.Quote(defaultHealthCheckInterval.String())),
	"tart_timeout":          withDefault(attr("tart_timeout", "string"), strconv.Quote(defaultTartTimeout.String())),
})
