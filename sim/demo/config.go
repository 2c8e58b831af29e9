// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package demo

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/tartbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
)

// serviceStopTimeout bounds the wait for the service to stop (its
// shutdown_timeout is serviceShutdownTimeout; the rest is margin).
const (
	serviceShutdownTimeout = 20 * time.Second
	serviceStopTimeout     = serviceShutdownTimeout + 10*time.Second
)

// demoToken is the simulator's GitHub token: it accepts any.
const demoToken = "demo-token"

func serviceConfig(url, name, stateDir string, env *backendEnv, o Options) (*config.Config, error) {
	maxR := o.MaxRunners
	ss := &config.ScaleSet{
		Name: name, Labels: []string{name}, MinRunners: o.MinRunners, MaxRunners: &maxR,
		Backend: env.kind, ReconcileInterval: "1s", RunnerOnlineTimeout: "2m",
		StartBackoffMin: "500ms", StartBackoffMax: "10s", RemoveIdleRunnersOnShutdown: true,
	}
	if env.docker != nil {
		ss.Docker = &config.BackendBlock{Value: env.docker}
	}
	if env.tart != nil {
		ss.Tart = &config.BackendBlock{Value: env.tart}
	}
	cfg := &config.Config{
		GitHubConfigURL: url, ListenAddress: "127.0.0.1:0", ShutdownTimeout: serviceShutdownTimeout.String(),
		GitHubToken: demoToken, ScaleSets: []*config.ScaleSet{ss}, StateDir: stateDir,
	}
	if err := errors.Join(cfg.Validate(), service.ValidateBackends(cfg)); err != nil {
		return nil, fmt.Errorf("invalid demo configuration: %w", err)
	}
	return cfg, nil
}

// renderConfig writes cfg as the HCL file an operator would write: the
// settings the demo chose, nothing else (the token comes from the
// environment, as in production).
func renderConfig(cfg *config.Config) ([]byte, error) {
	f := hclwrite.NewEmptyFile()
	root := f.Body()
	root.SetAttributeValue("github_config_url", cty.StringVal(cfg.GitHubConfigURL))
	root.SetAttributeValue("listen_address", cty.StringVal(cfg.ListenAddress))
	root.SetAttributeValue("shutdown_timeout", cty.StringVal(cfg.ShutdownTimeout))
	root.SetAttributeValue("state_dir", cty.StringVal(cfg.StateDir))
	for _, ss := range cfg.ScaleSets {
		root.AppendNewline()
		b := root.AppendNewBlock("scale_set", []string{ss.Name}).Body()
		b.SetAttributeValue("labels", stringList(ss.Labels))
		b.SetAttributeValue("min_runners", cty.NumberIntVal(int64(ss.MinRunners)))
		b.SetAttributeValue("max_runners", cty.NumberIntVal(int64(*ss.MaxRunners)))
		b.SetAttributeValue("backend", cty.StringVal(ss.Backend))
		b.SetAttributeValue("reconcile_interval", cty.StringVal(ss.ReconcileInterval))
		b.SetAttributeValue("runner_online_timeout", cty.StringVal(ss.RunnerOnlineTimeout))
		b.SetAttributeValue("start_backoff_min", cty.StringVal(ss.StartBackoffMin))
		b.SetAttributeValue("start_backoff_max", cty.StringVal(ss.StartBackoffMax))
		b.SetAttributeValue("remove_idle_runners_on_shutdown", cty.BoolVal(ss.RemoveIdleRunnersOnShutdown))
		if ss.Docker != nil {
			d, ok := ss.Docker.Value.(*dockerbackend.Config)
			if !ok {
				return nil, fmt.Errorf("scale_set %q: docker: the demo renders only a block it built, got %T", ss.Name, ss.Docker.Value)
			}
			db := b.AppendNewBlock("docker", nil).Body()
			db.SetAttributeValue("image", cty.StringVal(d.Image))
			db.SetAttributeValue("pull_policy", cty.StringVal(d.PullPolicy))
			db.SetAttributeValue("command", stringList(d.Command))
			db.SetAttributeValue("network_mode", cty.StringVal(d.NetworkMode))
			db.SetAttributeValue("jit_config_delivery", cty.StringVal(d.JITConfigDelivery))
			if d.InstanceID != "" {
				db.SetAttributeValue("instance_id", cty.StringVal(d.InstanceID))
			}
		}
		if ss.Tart != nil {
			t, ok := ss.Tart.Value.(*tartbackend.Config)
			if !ok {
				return nil, fmt.Errorf("scale_set %q: tart: the demo renders only a block it built, got %T", ss.Name, ss.Tart.Value)
			}
			tb := b.AppendNewBlock("tart", nil).Body()
			tb.SetAttributeValue("tart_path", cty.StringVal(t.TartPath))
			tb.SetAttributeValue("tart_home", cty.StringVal(t.TartHome))
			tb.SetAttributeValue("image", cty.StringVal(t.Image))
			tb.SetAttributeValue("max_vms", cty.NumberIntVal(int64(t.MaxVMs)))
			tb.SetAttributeValue("runner_command", stringList(t.RunnerCommand))
			tb.SetAttributeValue("start_timeout", cty.StringVal(t.StartTimeout))
			tb.SetAttributeValue("stop_timeout", cty.StringVal(t.StopTimeout))
			tb.SetAttributeValue("mac_seed", cty.StringVal(t.MACSeed))
		}
	}
	return append([]byte("# written by nomad-gha-scaleset-demo for one run\n"), f.Bytes()...), nil
}

func stringList(xs []string) cty.Value {
	if len(xs) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vs := make([]cty.Value, len(xs))
	for i, x := range xs {
		vs[i] = cty.StringVal(x)
	}
	return cty.ListVal(vs)
}
