// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
)

// Defaults of the nomad {} block.
const (
	DefaultRunnerNameMetaKey = "runner_name"
	DefaultScaleSetMetaKey   = "runner_scale_set_name"
	DefaultRunnerIDMetaKey   = "runner_id"
	DefaultIDPrefixTemplate  = "{runner_name}"
	DefaultPurgeGracePeriod  = 5 * time.Minute
	DefaultStartupTimeout    = 2 * time.Minute
	DefaultBlockingWait      = 5 * time.Minute
	// DispatchPayloadLimit is Nomad's limit on a dispatch payload
	// (16 KiB); the JIT config is the payload.
	DispatchPayloadLimit = 16 * 1024
)

// Config is the nomad {} block of a scale set in the service's HCL config.
// Connection fields left empty fall back to Nomad's standard environment
// variables (NOMAD_ADDR, NOMAD_REGION, NOMAD_NAMESPACE, NOMAD_TOKEN,
// NOMAD_CACERT, NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY, NOMAD_TLS_SERVER_NAME,
// NOMAD_SKIP_VERIFY) and, inside a Nomad task, to the task API socket
// ${NOMAD_SECRETS_DIR}/api.sock with the workload identity token.
type Config struct {
	Address   string `hcl:"address,optional"`
	Region    string `hcl:"region,optional"`
	Namespace string `hcl:"namespace,optional"`
	// TokenFile holds the ACL token; the token itself never goes in the
	// config file.
	TokenFile     string `hcl:"token_file,optional"`
	CACert        string `hcl:"ca_cert,optional"`
	ClientCert    string `hcl:"client_cert,optional"`
	ClientKey     string `hcl:"client_key,optional"`
	TLSServerName string `hcl:"tls_server_name,optional"`
	TLSSkipVerify bool   `hcl:"tls_skip_verify,optional"`

	// JobID is the parameterized job dispatched once per runner.
	JobID string `hcl:"job_id,optional"`
	// IDPrefixTemplate becomes the dispatch's id prefix; {runner_name}
	// and {scale_set} are replaced.
	IDPrefixTemplate  string `hcl:"id_prefix_template,optional"`
	RunnerNameMetaKey string `hcl:"runner_name_meta_key,optional"`
	ScaleSetMetaKey   string `hcl:"scale_set_meta_key,optional"`
	// RunnerIDMetaKey carries the GitHub runner ID, by which a restarted
	// service adopts the dispatched job. Sent when the parameterized job
	// declares it (meta_optional or meta_required).
	RunnerIDMetaKey string            `hcl:"runner_id_meta_key,optional"`
	Meta            map[string]string `hcl:"meta,optional"`

	PurgeGracePeriod string `hcl:"purge_grace_period,optional"`
	StartupTimeout   string `hcl:"startup_timeout,optional"`
	BlockingWait     string `hcl:"blocking_wait,optional"`

	// Parsed by Validate.
	PurgeGrace, Startup, Wait time.Duration
}

// Validate applies defaults and returns a joined error naming each bad field.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	def := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	def(&c.IDPrefixTemplate, DefaultIDPrefixTemplate)
	def(&c.RunnerNameMetaKey, DefaultRunnerNameMetaKey)
	def(&c.ScaleSetMetaKey, DefaultScaleSetMetaKey)
	def(&c.RunnerIDMetaKey, DefaultRunnerIDMetaKey)

	if strings.TrimSpace(c.JobID) == "" {
		add("job_id: must name the parameterized job that runs one runner (e.g. \"github-runner-macos\")")
	} else if strings.Contains(c.JobID, "/dispatch-") {
		add("job_id: %q is a dispatched job; name its parameterized parent", c.JobID)
	}
	if c.Address != "" {
		if u, err := url.Parse(c.Address); err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix") {
			add("address: %q must be an http://, https:// or unix:// URL", c.Address)
		}
	}
	if !strings.Contains(c.IDPrefixTemplate, "{runner_name}") {
		add("id_prefix_template: %q must contain {runner_name} so that nomad job status shows the runner", c.IDPrefixTemplate)
	}
	if strings.ContainsAny(c.IDPrefixTemplate, "/ ") {
		add("id_prefix_template: %q must not contain / or spaces", c.IDPrefixTemplate)
	}
	if c.RunnerNameMetaKey == c.ScaleSetMetaKey {
		add("scale_set_meta_key: must differ from runner_name_meta_key (both %q)", c.RunnerNameMetaKey)
	}
	if c.RunnerIDMetaKey == c.RunnerNameMetaKey || c.RunnerIDMetaKey == c.ScaleSetMetaKey {
		add("runner_id_meta_key: %q must differ from runner_name_meta_key and scale_set_meta_key", c.RunnerIDMetaKey)
	}
	for k := range c.Meta {
		if k == c.RunnerNameMetaKey || k == c.ScaleSetMetaKey || k == c.RunnerIDMetaKey {
			add("meta: key %q is set by the service itself", k)
		}
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		add("client_cert: client_cert and client_key must be given together")
	}
	c.PurgeGrace = config.DurationField(&errs, "purge_grace_period", c.PurgeGracePeriod, DefaultPurgeGracePeriod)
	c.Startup = config.DurationField(&errs, "startup_timeout", c.StartupTimeout, DefaultStartupTimeout)
	c.Wait = config.DurationField(&errs, "blocking_wait", c.BlockingWait, DefaultBlockingWait)
	if c.Wait > 5*time.Minute {
		add("blocking_wait: %s is above Nomad's maximum of 5m", c.Wait)
	}
	return errors.Join(errs...)
}

// idPrefix expands IDPrefixTemplate for one runner.
func (c *Config) idPrefix(runner, scaleSet string) string {
	return strings.NewReplacer("{runner_name}", runner, "{scale_set}", scaleSet).Replace(c.IDPrefixTemplate)
}

// apiConfig builds the Nomad client configuration: the block's fields,
// then Nomad's environment variables, then the task API socket.
func (c *Config) apiConfig(getenv func(string) string) (*api.Config, error) {
	ac := &api.Config{
		Address:   c.Address,
		Region:    c.Region,
		Namespace: c.Namespace,
		TLSConfig: &api.TLSConfig{
			CACert: c.CACert, ClientCert: c.ClientCert, ClientKey: c.ClientKey,
			TLSServerName: c.TLSServerName, Insecure: c.TLSSkipVerify,
		},
	}
	env := func(dst *string, name string) {
		if *dst == "" {
			*dst = getenv(name)
		}
	}
	env(&ac.Address, "NOMAD_ADDR")
	env(&ac.Region, "NOMAD_REGION")
	env(&ac.Namespace, "NOMAD_NAMESPACE")
	env(&ac.TLSConfig.CACert, "NOMAD_CACERT")
	env(&ac.TLSConfig.CAPath, "NOMAD_CAPATH")
	env(&ac.TLSConfig.ClientCert, "NOMAD_CLIENT_CERT")
	env(&ac.TLSConfig.ClientKey, "NOMAD_CLIENT_KEY")
	env(&ac.TLSConfig.TLSServerName, "NOMAD_TLS_SERVER_NAME")
	if !ac.TLSConfig.Insecure && getenv("NOMAD_SKIP_VERIFY") == "true" {
		ac.TLSConfig.Insecure = true
	}
	secrets := getenv("NOMAD_SECRETS_DIR")
	if ac.Address == "" && secrets != "" {
		if _, err := os.Stat(filepath.Join(secrets, "api.sock")); err == nil {
			ac.Address = "unix://" + filepath.Join(secrets, "api.sock")
		}
	}
	if ac.Address == "" {
		ac.Address = "http://127.0.0.1:4646"
	}
	if ac.Namespace == "" {
		ac.Namespace = "default"
	}
	switch {
	case c.TokenFile != "":
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("token_file: failed to read %q: %w", c.TokenFile, errors.Unwrap(err))
		}
		ac.SecretID = strings.TrimSpace(string(b))
	case getenv("NOMAD_TOKEN") != "":
		ac.SecretID = getenv("NOMAD_TOKEN")
	case secrets != "":
		// identity { file = true } writes the workload identity here
		if b, err := os.ReadFile(filepath.Join(secrets, "nomad_token")); err == nil {
			ac.SecretID = strings.TrimSpace(string(b))
		}
	}
	return ac, nil
}
