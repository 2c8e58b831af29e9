// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package config reads the scale-set service's configuration: an HCL file
// (hcl/v2, decoded with gohcl), overlaid by environment variables and then
// command-line flags. It uses actions-runner-controller's vocabulary where
// the concept is the same (github_config_url, runner_scale_set_name,
// labels, runner_group, min_runners, max_runners).
//
// Secrets (PAT, App private key) are read from a file or an environment
// variable, never written inline in the file, and held in a Secret type
// whose every printed form is redacted.
//
// Defaults live here and nowhere else: Validate applies them and returns a
// joined error naming each bad field.
//
// This package imports no backend: a scale set's docker {}, tart {} or
// nomad {} block stays undecoded (BackendBlock) and the service wiring
// decodes and validates it with the backend package that owns its schema
// (service.ValidateBackends), so the backends may import this package
// for its shared helpers (DurationField).
package config

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// EnvPrefix starts every environment variable the service reads.
const EnvPrefix = "NOMAD_GHA_SCALESET_"

// DefaultListenAddress and DefaultShutdownTimeout are the defaults the
// command line's help and the deployment files refer to.
const (
	DefaultListenAddress   = "127.0.0.1:9464"
	DefaultShutdownTimeout = 30 * time.Second
)

// Defaults of the other fields (the README lists them with each option).
const (
	defaultLogLevel            = "info"
	defaultLogFormat           = "text"
	defaultMaxRunners          = 10
	defaultRunnerGroup         = "default"
	defaultRunnerOnlineTimeout = 5 * time.Minute
	defaultRunnerQueueTimeout  = time.Hour
	defaultReconcileInterval   = 10 * time.Second
	defaultStartBackoffMin     = time.Second
	defaultStartBackoffMax     = 2 * time.Minute
	defaultSessionConflictWait = 3 * time.Minute
	defaultHTTPRetryMax        = 4
	defaultHTTPRetryWaitMax    = 30 * time.Second

	// maxMaxRunners bounds max_runners. Every runner is a backend resource
	// and a GitHub registration that each reconcile pass accounts for, and
	// a JIT config request at GitHub's API rate limit; a scale set above a
	// thousand runners is a configuration mistake (a stray zero) more often
	// than a plan. Split larger fleets into several scale sets.
	maxMaxRunners = 1000
)

// Backend kinds.
const (
	BackendDocker = "docker"
	BackendTart   = "tart"
	BackendNomad  = "nomad"
)

// Secret is a credential. Every way of printing it is redacted; call
// Reveal to use it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String redacts.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts (%#v).
func (s Secret) GoString() string { return s.String() }

// MarshalText redacts (JSON, slog text).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Config is the whole service configuration.
type Config struct {
	// GitHubConfigURL is the default for scale sets that do not set one.
	GitHubConfigURL string     `hcl:"github_config_url,optional"`
	GitHubTokenFile string     `hcl:"github_token_file,optional"`
	GitHubTokenEnv  string     `hcl:"github_token_env,optional"`
	GitHubApp       *GitHubApp `hcl:"github_app,block"`

	// GitHubHTTPRetryMax and GitHubHTTPRetryWaitMax tune the client's
	// retries of 5xx, 429 and network errors.
	GitHubHTTPRetryMax     *int   `hcl:"github_http_retry_max,optional"`
	GitHubHTTPRetryWaitMax string `hcl:"github_http_retry_wait_max,optional"`

	ListenAddress   string `hcl:"listen_address,optional"`
	LogLevel        string `hcl:"log_level,optional"`
	LogFormat       string `hcl:"log_format,optional"`
	ShutdownTimeout string `hcl:"shutdown_timeout,optional"`
	// StateDir holds the service's durable state: one start journal per
	// scale set (runner names and IDs, no secrets). Default: see
	// DefaultStateDir.
	StateDir string `hcl:"state_dir,optional"`

	ScaleSets []*ScaleSet `hcl:"scale_set,block"`

	// Resolved by ResolveSecrets.
	GitHubToken Secret
	// Parsed by Validate.
	ShutdownTimeoutDuration        time.Duration
	GitHubHTTPRetryWaitMaxDuration time.Duration
}

// GitHubApp holds GitHub App credentials; the private key comes from a
// file or an environment variable.
type GitHubApp struct {
	ClientID       string `hcl:"client_id"`
	InstallationID int64  `hcl:"installation_id"`
	PrivateKeyFile string `hcl:"private_key_file,optional"`
	PrivateKeyEnv  string `hcl:"private_key_env,optional"`

	PrivateKey Secret
}

// ScaleSet is one runner scale set and its backend.
type ScaleSet struct {
	// Name is the block label; the default runner_scale_set_name.
	Name string `hcl:"name,label"`

	GitHubConfigURL    string   `hcl:"github_config_url,optional"`
	RunnerScaleSetName string   `hcl:"runner_scale_set_name,optional"`
	Labels             []string `hcl:"labels,optional"`
	RunnerGroup        string   `hcl:"runner_group,optional"`
	MinRunners         int      `hcl:"min_runners,optional"`
	MaxRunners         *int     `hcl:"max_runners,optional"`

	Backend          string `hcl:"backend"`
	RunnerNamePrefix string `hcl:"runner_name_prefix,optional"`

	RunnerOnlineTimeout         string `hcl:"runner_online_timeout,optional"`
	RunnerQueueTimeout          string `hcl:"runner_queue_timeout,optional"`
	ReconcileInterval           string `hcl:"reconcile_interval,optional"`
	StartBackoffMin             string `hcl:"start_backoff_min,optional"`
	StartBackoffMax             string `hcl:"start_backoff_max,optional"`
	SessionConflictTimeout      string `hcl:"session_conflict_timeout,optional"`
	RemoveIdleRunnersOnShutdown bool   `hcl:"remove_idle_runners_on_shutdown,optional"`

	// Docker, Tart and Nomad are the docker {}, tart {} and nomad {}
	// blocks; Validate sets the one Backend names when it is absent.
	Docker *BackendBlock `hcl:"docker,block"`
	Tart   *BackendBlock `hcl:"tart,block"`
	Nomad  *BackendBlock `hcl:"nomad,block"`

	// Parsed by Validate.
	Durations Durations
}

// BackendBlock is a scale set's docker {}, tart {} or nomad {} block. This
// package does not know the backends' schemas (it imports no backend): it
// keeps the block as written, and the service wiring decodes and
// validates it with the backend package that owns it
// (service.DecodeBackend, service.ValidateBackends).
type BackendBlock struct {
	// Body is the block as written in the file.
	Body hcl.Body `hcl:",remain"`
	// Value is the backend's own configuration (a *dockerbackend.Config,
	// *tartbackend.Config or *nomadbackend.Config) when a program builds
	// the Config instead of parsing a file; when set, Body is ignored.
	Value any
}

// Durations are the parsed duration fields of a ScaleSet.
type Durations struct {
	RunnerOnlineTimeout, ReconcileInterval time.Duration
	RunnerQueueTimeout                     time.Duration
	StartBackoffMin, StartBackoffMax       time.Duration
	SessionConflictTimeout                 time.Duration
}

// Max returns max_runners (after Validate, never nil).
func (s *ScaleSet) Max() int {
	if s.MaxRunners == nil {
		return defaultMaxRunners
	}
	return *s.MaxRunners
}

// Parse decodes HCL source. filename is used in diagnostics only.
func Parse(src []byte, filename string) (*Config, error) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, fmt.Errorf("failed to parse %s: %w", filename, diags)
	}
	var c Config
	if diags := gohcl.DecodeBody(file.Body, nil, &c); diags.HasErrors() {
		return nil, fmt.Errorf("failed to decode %s: %w", filename, diags)
	}
	return &c, nil
}

// LoadFile reads and parses an HCL file.
func LoadFile(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read config file: %w", err)
	}
	return Parse(src, path)
}

// ResolveSecrets reads the PAT and the App private key from their file or
// environment variable, then from NOMAD_GHA_SCALESET_GITHUB_TOKEN and
// NOMAD_GHA_SCALESET_GITHUB_APP_PRIVATE_KEY when nothing else is set.
// Errors name the field and the file, never the content.
func (c *Config) ResolveSecrets(getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	read := func(field, file, env, fallbackEnv string) Secret {
		switch {
		case file != "":
			b, err := os.ReadFile(file)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: failed to read %q: %w", field, file, errors.Unwrap(err)))
				return ""
			}
			return Secret(strings.TrimSpace(string(b)))
		case env != "":
			v := getenv(env)
			if v == "" {
				errs = append(errs, fmt.Errorf("%s: environment variable %s is empty or unset", field, env))
			}
			return Secret(strings.TrimSpace(v))
		default:
			return Secret(strings.TrimSpace(getenv(fallbackEnv)))
		}
	}
	c.GitHubToken = read("github_token_file/github_token_env", c.GitHubTokenFile, c.GitHubTokenEnv, EnvPrefix+"GITHUB_TOKEN")
	if c.GitHubApp != nil {
		c.GitHubApp.PrivateKey = read("github_app.private_key_file/private_key_env", c.GitHubApp.PrivateKeyFile, c.GitHubApp.PrivateKeyEnv, EnvPrefix+"GITHUB_APP_PRIVATE_KEY")
	}
	return errors.Join(errs...)
}

// Overlay holds values from the environment and flags; empty fields leave
// the file's value alone.
type Overlay struct {
	ListenAddress, LogLevel, LogFormat, GitHubConfigURL, StateDir string
}

// EnvOverlay reads NOMAD_GHA_SCALESET_{LISTEN_ADDRESS,LOG_LEVEL,LOG_FORMAT,
// GITHUB_CONFIG_URL,STATE_DIR}.
func EnvOverlay(getenv func(string) string) Overlay {
	return Overlay{
		ListenAddress:   getenv(EnvPrefix + "LISTEN_ADDRESS"),
		LogLevel:        getenv(EnvPrefix + "LOG_LEVEL"),
		LogFormat:       getenv(EnvPrefix + "LOG_FORMAT"),
		GitHubConfigURL: getenv(EnvPrefix + "GITHUB_CONFIG_URL"),
		StateDir:        getenv(EnvPrefix + "STATE_DIR"),
	}
}

// StateDirName is the directory the default state_dir ends in under
// $XDG_STATE_HOME or ~/.local/state.
const StateDirName = "nomad-gha-scaleset"

// DefaultStateDir is the state_dir when none is configured: systemd's
// $STATE_DIRECTORY (its first entry) when set (StateDirectory= in the
// unit), else $XDG_STATE_HOME/nomad-gha-scaleset, else
// $HOME/.local/state/nomad-gha-scaleset. It returns "" when none of them
// is set.
func DefaultStateDir(getenv func(string) string) string {
	if d, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); d != "" {
		return d
	}
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, StateDirName)
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", StateDirName)
	}
	return ""
}

// Apply sets every non-empty overlay field.
func (c *Config) Apply(o Overlay) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.ListenAddress, o.ListenAddress)
	set(&c.LogLevel, o.LogLevel)
	set(&c.LogFormat, o.LogFormat)
	set(&c.GitHubConfigURL, o.GitHubConfigURL)
	set(&c.StateDir, o.StateDir)
}

// Validate applies defaults and returns a joined error naming each bad
// field. Call ResolveSecrets first. It touches no file: the service
// creates state_dir at start-up (see CheckStateDir).
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	def(&c.ListenAddress, DefaultListenAddress)
	def(&c.LogLevel, defaultLogLevel)
	def(&c.LogFormat, defaultLogFormat)
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		add("log_level: must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		add("log_format: must be text or json, got %q", c.LogFormat)
	}
	def(&c.StateDir, DefaultStateDir(os.Getenv))
	if c.StateDir == "" {
		add("state_dir: not set, and neither STATE_DIRECTORY, XDG_STATE_HOME nor HOME is set to derive it from")
	}
	c.ShutdownTimeoutDuration = DurationField(&errs, "shutdown_timeout", c.ShutdownTimeout, DefaultShutdownTimeout)
	c.GitHubHTTPRetryWaitMaxDuration = DurationField(&errs, "github_http_retry_wait_max", c.GitHubHTTPRetryWaitMax, defaultHTTPRetryWaitMax)
	if c.GitHubHTTPRetryMax == nil {
		n := defaultHTTPRetryMax
		c.GitHubHTTPRetryMax = &n
	}
	if *c.GitHubHTTPRetryMax < 0 || *c.GitHubHTTPRetryMax > 20 {
		add("github_http_retry_max: must be between 0 and 20, got %d", *c.GitHubHTTPRetryMax)
	}

	if c.GitHubApp != nil {
		if c.GitHubApp.ClientID == "" {
			add("github_app.client_id: must not be empty")
		}
		if c.GitHubApp.InstallationID <= 0 {
			add("github_app.installation_id: must be positive, got %d", c.GitHubApp.InstallationID)
		}
		if c.GitHubApp.PrivateKey == "" {
			add("github_app.private_key_file: no private key (set private_key_file, private_key_env or %sGITHUB_APP_PRIVATE_KEY)", EnvPrefix)
		} else if err := checkPrivateKey(c.GitHubApp.PrivateKey); err != nil {
			add("github_app.private_key_file: %w", err)
		}
	} else if c.GitHubToken == "" {
		add("github_token_file: no credentials (set github_app {}, github_token_file, github_token_env or %sGITHUB_TOKEN)", EnvPrefix)
	}

	if len(c.ScaleSets) == 0 {
		add("scale_set: at least one scale_set block is required")
	}
	names := map[string]bool{}
	prefixes := map[string]bool{}
	for _, s := range c.ScaleSets {
		errs = append(errs, s.validate(c.GitHubConfigURL)...)
		key := s.GitHubConfigURL + "|" + s.RunnerGroup + "|" + s.RunnerScaleSetName
		if names[key] {
			add("scale_set %q: runner_scale_set_name %q is used twice in the same runner group", s.Name, s.RunnerScaleSetName)
		}
		names[key] = true
		if prefixes[s.RunnerNamePrefix] {
			add("scale_set %q: runner_name_prefix %q is used by another scale set", s.Name, s.RunnerNamePrefix)
		}
		prefixes[s.RunnerNamePrefix] = true
	}
	return errors.Join(errs...)
}

func (s *ScaleSet) validate(defaultURL string) []error {
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("scale_set %q: "+format, append([]any{s.Name}, a...)...))
	}
	def(&s.GitHubConfigURL, defaultURL)
	def(&s.RunnerScaleSetName, s.Name)
	def(&s.RunnerGroup, defaultRunnerGroup)
	def(&s.RunnerNamePrefix, s.RunnerScaleSetName)
	if s.MaxRunners == nil {
		n := defaultMaxRunners
		s.MaxRunners = &n
	}
	if s.GitHubConfigURL == "" {
		add("github_config_url: must be set here or at the top level")
	} else if err := checkConfigURL(s.GitHubConfigURL); err != nil {
		add("github_config_url: %w", err)
	}
	if s.RunnerScaleSetName == "" {
		add("runner_scale_set_name: must not be empty")
	}
	if strings.ContainsAny(s.RunnerScaleSetName+s.RunnerNamePrefix, "&#+%?/ ") {
		add("runner_scale_set_name: %q (or runner_name_prefix) must not contain &, #, +, %%, ?, / or spaces", s.RunnerScaleSetName)
	}
	for i, l := range s.Labels {
		if strings.TrimSpace(l) == "" {
			add("labels[%d]: must not be blank", i)
		}
	}
	if s.MinRunners < 0 {
		add("min_runners: must be >= 0, got %d", s.MinRunners)
	}
	if *s.MaxRunners < 1 {
		add("max_runners: must be >= 1, got %d", *s.MaxRunners)
	} else if *s.MaxRunners > maxMaxRunners {
		add("max_runners: %d is above the limit of %d runners per scale set (each is a backend resource and a GitHub registration the service reconciles; split larger fleets into several scale sets)", *s.MaxRunners, maxMaxRunners)
	}
	if s.MinRunners > *s.MaxRunners {
		add("min_runners: %d is above max_runners %d", s.MinRunners, *s.MaxRunners)
	}
	var derrs []error
	s.Durations = Durations{
		RunnerOnlineTimeout:    DurationField(&derrs, "runner_online_timeout", s.RunnerOnlineTimeout, defaultRunnerOnlineTimeout),
		RunnerQueueTimeout:     DurationField(&derrs, "runner_queue_timeout", s.RunnerQueueTimeout, defaultRunnerQueueTimeout),
		ReconcileInterval:      DurationField(&derrs, "reconcile_interval", s.ReconcileInterval, defaultReconcileInterval),
		StartBackoffMin:        DurationField(&derrs, "start_backoff_min", s.StartBackoffMin, defaultStartBackoffMin),
		StartBackoffMax:        DurationField(&derrs, "start_backoff_max", s.StartBackoffMax, defaultStartBackoffMax),
		SessionConflictTimeout: DurationField(&derrs, "session_conflict_timeout", s.SessionConflictTimeout, defaultSessionConflictWait),
	}
	for _, e := range derrs {
		add("%w", e)
	}
	if s.Durations.StartBackoffMax < s.Durations.StartBackoffMin {
		add("start_backoff_max: must be >= start_backoff_min")
	}

	blocks := map[string]bool{BackendDocker: s.Docker != nil, BackendTart: s.Tart != nil, BackendNomad: s.Nomad != nil}
	switch s.Backend {
	case BackendDocker:
		defBlock(&s.Docker)
	case BackendTart:
		defBlock(&s.Tart)
	case BackendNomad:
		defBlock(&s.Nomad)
	default:
		add("backend: must be docker, tart or nomad, got %q", s.Backend)
	}
	for kind, present := range blocks {
		if present && kind != s.Backend {
			add("%s: block given but backend is %q", kind, s.Backend)
		}
	}
	return errs
}

// checkConfigURL accepts the three shapes GitHub gives a scale set a home
// in: https://<host>/enterprises/<enterprise>, https://<host>/<org> and
// https://<host>/<org>/<repo> (http for a test server). Anything else
// would be misread: /enterprises/ alone as an organization named
// "enterprises", /o/r/extra as the repository r.
func checkConfigURL(raw string) error {
	shape := fmt.Errorf("%q must be https://<host>/enterprises/<enterprise>, https://<host>/<org> or https://<host>/<org>/<repo>", raw)
	u, err := url.Parse(raw)
	if err != nil {
		return shape
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("%q: scheme must be https (or http), got %q", raw, u.Scheme)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return shape
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	for _, p := range parts {
		if p == "" {
			return shape
		}
	}
	switch {
	case parts[0] == "enterprises" && len(parts) == 2:
	case parts[0] == "enterprises":
		return shape
	case len(parts) == 1 || len(parts) == 2:
	default:
		return shape
	}
	return nil
}

// checkPrivateKey parses a GitHub App private key (PEM, PKCS#1 or PKCS#8
// RSA) so a bad key is a configuration error at start-up, not a token
// request failing forever. The error never quotes the key.
func checkPrivateKey(key Secret) error {
	block, _ := pem.Decode([]byte(key.Reveal()))
	if block == nil {
		return errors.New("the private key is not PEM (expected -----BEGIN RSA PRIVATE KEY-----, as GitHub issues it)")
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("the private key (PEM type %q) cannot be parsed as an RSA key", block.Type)
	}
	if _, ok := k.(*rsa.PrivateKey); !ok {
		return fmt.Errorf("the private key is %T, GitHub Apps use RSA keys", k)
	}
	return nil
}

// defBlock gives a scale set without its backend's block an empty one:
// the backend's defaults apply.
func defBlock(b **BackendBlock) {
	if *b == nil {
		*b = &BackendBlock{Body: hcl.EmptyBody()}
	}
}

func def(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

// DurationField parses the duration field named field: "" gives fallback, and
// anything but a positive duration appends an error naming the field and
// the value to errs and gives fallback, so a Validate reports every bad field
// in one joined error. The backends' blocks use it too.
func DurationField(errs *[]error, field, v string, fallback time.Duration) time.Duration {
	if v == "" {
		return fallback
	}
	p, err := time.ParseDuration(v)
	if err != nil || p <= 0 {
		*errs = append(*errs, fmt.Errorf("%s: must be a positive duration like \"30s\", got %q", field, v))
		return fallback
	}
	return p
}

// CheckStateDir creates state_dir (0700) when missing and checks that a
// file can be written in it, so a bad state_dir stops the service at
// start-up with an error naming the field, not at its first runner.
func CheckStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state_dir: cannot create %q: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("state_dir: %q is not writable: %w", dir, err)
	}
	name := f.Name()
	_ = f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("state_dir: failed to remove %q: %w", name, err)
	}
	return nil
}
