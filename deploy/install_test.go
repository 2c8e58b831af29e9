// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/dist"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

// TestInstall_macPluginsInPluginDir ties the Mac install steps together:
// every Nomad plugin `make dist` archives (derived from cmd/, so today
// nomad-driver-tart and nomad-device-tart) is installed by the README's
// Mac steps into the plugin_dir of the agent config those steps copy
// (examples/scaleset-dispatch/agent-mac.hcl), which has a plugin block for
// it; and the LaunchAgent reads the directory that config is copied to.
func TestInstall_macPluginsInPluginDir(t *testing.T) {
	root := testutil.RepoRoot(t)

	targets, err := dist.Targets(filepath.Join(root, "cmd"))
	must.NoError(t, err)
	var plugins []string
	for _, tg := range targets {
		if strings.HasPrefix(tg.Binary, "nomad-driver-") || strings.HasPrefix(tg.Binary, "nomad-device-") {
			must.Eq(t, dist.Platform{OS: "darwin", Arch: "arm64"}, tg.Platform, must.Sprintf("%s ships for Macs only", tg.Binary))
			plugins = append(plugins, tg.Binary)
		}
	}
	must.SliceContains(t, plugins, "nomad-driver-tart")
	must.SliceContains(t, plugins, "nomad-device-tart")

	// The agent config: plugin_dir and the plugin blocks' labels.
	src, err := os.ReadFile(filepath.Join(root, "examples/scaleset-dispatch/agent-mac.hcl"))
	must.NoError(t, err)
	f, diags := hclsyntax.ParseConfig(src, "agent-mac.hcl", hcl.InitialPos)
	must.False(t, diags.HasErrors(), must.Sprint(diags.Error()))
	body := f.Body.(*hclsyntax.Body)
	attr, ok := body.Attributes["plugin_dir"]
	must.True(t, ok, must.Sprint("agent-mac.hcl sets no plugin_dir"))
	v, diags := attr.Expr.Value(nil)
	must.False(t, diags.HasErrors(), must.Sprint(diags.Error()))
	pluginDir := v.AsString()
	var blocks []string
	for _, b := range body.Blocks {
		if b.Type == "plugin" && len(b.Labels) == 1 {
			blocks = append(blocks, b.Labels[0])
		}
	}
	for _, p := range plugins {
		must.SliceContains(t, blocks, p, must.Sprintf("agent-mac.hcl has no plugin %q block", p))
	}

	// The README's Mac steps: create plugin_dir, install each plugin's
	// archive into it, copy agent-mac.hcl where the LaunchAgent reads it.
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	must.NoError(t, err)
	_, mac, ok := strings.Cut(string(readme), "\n### Mac: a Nomad client")
	must.True(t, ok, must.Sprint("README Install has no Mac Nomad client section"))
	mac, _, _ = strings.Cut(mac, "\n### ")
	must.StrContains(t, mac, "mkdir -p ")
	must.StrContains(t, mac, " "+pluginDir+" ", must.Sprintf("the Mac steps do not create plugin_dir %s", pluginDir))
	loop := regexp.MustCompile(`(?m)^\s*for p in ([^;]+); do$`).FindStringSubmatch(mac)
	must.SliceLen(t, 2, loop, must.Sprint("the Mac steps have no `for p in …; do` plugin install loop"))
	installed := strings.Fields(loop[1])
	for _, p := range plugins {
		must.SliceContains(t, installed, p, must.Sprintf("the Mac steps do not install %s", p))
	}
	must.StrContains(t, mac, "${p}_", must.Sprint("the loop unpacks each plugin's release archive"))
	must.StrContains(t, mac, "/tmp/$p/$p "+pluginDir+"/", must.Sprintf("the loop does not install into plugin_dir %s", pluginDir))

	argv := strs(t, plistDict(t, "launchd/io.github.tartnomad.nomad-client.plist")["ProgramArguments"])
	i := slices.IndexFunc(argv, func(a string) bool { return strings.HasPrefix(a, "-config=") })
	must.NonNegative(t, i)
	confDir := strings.TrimPrefix(argv[i], "-config=")
	flat := strings.Join(strings.Fields(mac), " ")
	must.StrContains(t, flat, "agent-mac.hcl) to `"+confDir+"/", must.Sprintf("the Mac steps do not copy agent-mac.hcl into %s", confDir))
}
