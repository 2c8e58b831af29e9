// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadagent

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/docker/docker/client"
)

// deniedFingerprinters stall start-up probing cloud metadata endpoints that
// no test machine can reach.
const deniedFingerprinters = "env_aws,env_gce,env_azure,env_digitalocean"

// writeConfig writes the agent's config file (and Options.ExtraHCL as a
// second one) for the given http, rpc and serf ports, and sets the drivers
// readiness waits for.
func (a *Agent) writeConfig(t testing.TB, ports []int) {
	t.Helper()
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	q := strconv.Quote

	p("name = %s", q(a.NodeName))
	p("data_dir = %s", q(a.DataDir))
	p("plugin_dir = %s", q(a.PluginDir))
	p("bind_addr = \"127.0.0.1\"")
	p("log_level = \"DEBUG\"")
	p("disable_update_check = true")
	p("advertise {\n  http = \"127.0.0.1\"\n  rpc = \"127.0.0.1\"\n  serf = \"127.0.0.1\"\n}")
	p("ports {\n  http = %d\n  rpc = %d\n  serf = %d\n}", ports[0], ports[1], ports[2])
	if a.opts.Server == nil {
		p("server {\n  enabled = true\n  bootstrap_expect = 1\n}")
	}
	if a.opts.ACL {
		p("acl {\n  enabled = true\n}")
	}

	p("client {")
	p("  enabled = true")
	p("  network_interface = \"lo\"")
	p("  alloc_dir = %s", q(filepath.Join(a.DataDir, "alloc")))
	p("  state_dir = %s", q(filepath.Join(a.DataDir, "client")))
	// Room for the examples' resources (4 cores, 8 GiB per VM) on a small
	// CI machine: faketart VMs use none of it.
	p("  cpu_total_compute = 64000")
	p("  memory_total_mb = 65536")
	if a.opts.Server != nil {
		p("  servers = [%s]", q(a.opts.Server.RPCAddr))
	}
	denied := []string{"java", "qemu"}
	if !a.opts.Docker {
		denied = append(denied, "docker")
	}
	p("  options = {")
	p("    \"fingerprint.denylist\" = %s", q(deniedFingerprinters))
	p("    \"driver.denylist\" = %s", q(strings.Join(denied, ",")))
	p("  }")
	if len(a.opts.Meta) > 0 {
		p("  meta = {")
		for _, k := range sortedKeys(a.opts.Meta) {
			p("    %s = %s", q(k), q(a.opts.Meta[k]))
		}
		p("  }")
	}
	p("}")

	a.drivers = nil
	for _, pkg := range a.opts.Plugins {
		name := filepath.Base(pkg)
		p("plugin %s {\n  config {\n%s\n  }\n}", q(name), a.opts.PluginConfig[name])
		if pkg == TartPlugin {
			a.drivers = append(a.drivers, "tart")
		}
	}
	for name := range a.opts.PluginConfig {
		if !slices.ContainsFunc(a.opts.Plugins, func(pkg string) bool { return filepath.Base(pkg) == name }) {
			t.Fatalf("nomadagent: PluginConfig for %q, which is not among Plugins %v", name, a.opts.Plugins)
		}
	}
	if a.opts.Docker {
		host := os.Getenv("DOCKER_HOST")
		if host == "" {
			host = client.DefaultDockerHost
		}
		p("plugin \"docker\" {\n  config {\n    endpoint = %s\n    allow_privileged = false\n"+
			"    volumes {\n      enabled = true\n    }\n"+
			// Tests build their images offline and share them within a
			// process: the driver must not delete one after its task.
			"    gc {\n      image = false\n    }\n  }\n}", q(host))
		a.drivers = append(a.drivers, "docker")
	}

	cfg := filepath.Join(a.root, "agent.hcl")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatalf("nomadagent: write agent config: %v", err)
	}
	a.cfgArgs = []string{"-config", cfg}
	if a.opts.ExtraHCL != "" {
		extra := filepath.Join(a.root, "extra.hcl")
		if err := os.WriteFile(extra, []byte(a.opts.ExtraHCL), 0o644); err != nil {
			t.Fatalf("nomadagent: write extra agent config: %v", err)
		}
		a.cfgArgs = append(a.cfgArgs, "-config", extra)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
