// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/device"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil/nomadagent"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
	"github.com/tartnomad/nomad-driver-tart/tart"
)

// flowAgent is a real agent set up as the example's Mac and Linux clients
// in one: the tart driver with the example's warm pool (faketart) and the
// docker driver, ACLs on, both runner jobs registered.
type flowAgent struct {
	agent      *nomadagent.Agent
	docker     *client.Client
	fakerunner string
	image      string // the Linux runner image
	tokenFile  string // a token of the example policy (1.6 variant)
	faketart   string
}

// tartPluginConfig is the example agent-mac.hcl's plugin config, with the
// test's fast polls; bootDelay is faketart's simulated boot.
func tartPluginConfig() string {
	return nomadagent.FastTartConfig + fmt.Sprintf(`max_vms = 2
slot_wait_timeout = "2m"
gc_interval = "5m"
gc_grace_period = "15m"
pool {
  name   = %q
  image  = %q
  size   = 1
  cpu    = 4
  memory = 8192
}
`, poolName, macImage)
}

// healthyVMSlots counts the node's healthy tart/vm slot instances.
func healthyVMSlots(n *api.Node) int {
	if n.NodeResources == nil {
		return 0
	}
	healthy := 0
	for _, g := range n.NodeResources.Devices {
		if g.Vendor != device.Vendor || g.Type != device.Type || g.Name != device.Name {
			continue
		}
		for _, d := range g.Instances {
			if d.Healthy {
				healthy++
			}
		}
	}
	return healthy
}

// startFlowAgent starts the agent (with env for faketart, e.g. its boot
// delay) and registers the macOS runner job, and with linux the docker
// driver and the Linux runner job.
func startFlowAgent(t testing.TB, env map[string]string, linux bool) *flowAgent {
	t.Helper()
	fa := &flowAgent{fakerunner: testutil.BuildBinary(t, "./sim/cmd/fakerunner"),
		faketart: testutil.BuildBinary(t, "./sim/cmd/faketart")}
	if linux {
		fa.docker = testutil.DockerClient(t)
		fa.image = testutil.BuildImageFromBinary(t, fa.docker, fa.fakerunner, "nomad-e2e-fakerunner")
	}
	fa.agent = nomadagent.Start(t, nomadagent.Options{
		ACL: true, Docker: linux, Images: []string{macImage}, Env: env,
		// As agent-mac.hcl: the slot device beside the driver, same
		// max_vms (the macOS runner job asks for one tart/vm slot).
		Plugins: []string{nomadagent.TartPlugin, "./cmd/" + device.BinaryName},
		PluginConfig: map[string]string{
			"nomad-driver-tart": tartPluginConfig(),
			device.BinaryName:   "max_vms = 2",
		},
		Ready: func(n *api.Node) bool {
			return n.Attributes["driver.tart.pool."+poolName+".ready"] == "1" && healthyVMSlots(n) == 2
		},
	})
	c := fa.agent.API()
	_, err := c.Namespaces().Register(&api.Namespace{Name: runnerNS}, nil)
	must.NoError(t, err)
	root := filepath.Join(testutil.RepoRoot(t), "examples", "scaleset-dispatch")
	mac, err := os.ReadFile(filepath.Join(root, "10-runner-macos.nomad.hcl"))
	must.NoError(t, err)
	linuxJob, err := os.ReadFile(filepath.Join(root, "11-runner-linux.nomad.hcl"))
	must.NoError(t, err)
	fa.agent.RunJobHCL(t, adaptMacJob(t, string(mac), fa.fakerunner))
	if linux {
		fa.agent.RunJobHCL(t, adaptLinuxJob(t, string(linuxJob), fa.image))
	}

	target := &agentTarget{client: c}
	token := target.Token(t, examplePolicy(t, true))
	fa.tokenFile = filepath.Join(t.TempDir(), "nomad-token")
	must.NoError(t, os.WriteFile(fa.tokenFile, []byte(token+"\n"), 0o600))
	return fa
}

// replaceOnce replaces the one match of re in src, failing when the
// example no longer has it (the adaptation would silently not apply).
func replaceOnce(t testing.TB, src string, re *regexp.Regexp, repl string) string {
	t.Helper()
	must.Eq(t, 1, len(re.FindAllStringIndex(src, -1)), must.Sprintf("pattern %s in the example", re))
	return re.ReplaceAllLiteralString(src, repl)
}

// adaptMacJob changes the example macOS runner job only in the guest
// command: on faketart the "guest" is a host process, so instead of bash
// exporting the JIT config into the real runner's environment (private to
// the VM on a Mac, but a host process's environment here) fakerunner reads
// it from stdin, which the driver feeds from stdin_file as in the example.
func adaptMacJob(t testing.TB, src, fakerunner string) string {
	t.Helper()
	src = replaceOnce(t, src, regexp.MustCompile(`command\s*=\s*"/bin/bash"`), fmt.Sprintf("command = %q", fakerunner))
	return replaceOnce(t, src, regexp.MustCompile(`(?s)args = \[\n.*?\n\s*\]`),
		`args = ["--jitconfig", "-", "--connect-timeout", "30s"]`)
}

// adaptLinuxJob changes the example Linux runner job only in its image
// (the offline fakerunner image instead of ghcr.io/actions/actions-runner,
// which has bash and run.sh) and its entrypoint (fakerunner reads
// /local/jitconfig itself: the real runner takes the JIT config only from
// its environment or argv, which the /proc scan would see on this host),
// plus network_mode = "host" (no bridge network on the test engine; the
// runner reaches the simulator on loopback).
func adaptLinuxJob(t testing.TB, src, image string) string {
	t.Helper()
	src = replaceOnce(t, src, regexp.MustCompile(`image\s*=\s*"ghcr.io/actions/actions-runner:[^"]+"`),
		fmt.Sprintf("image = %q\n        network_mode = \"host\"", image))
	src = replaceOnce(t, src, regexp.MustCompile(`entrypoint\s*=\s*\["/bin/bash", "-c"\]`), `entrypoint = ["/bin/fakerunner"]`)
	return replaceOnce(t, src, regexp.MustCompile(`(?s)args = \[\n.*?\n\s*\]`),
		`args = ["--jitconfig-file", "/local/jitconfig", "--connect-timeout", "30s"]`)
}

// scaleSetSpec is one scale set of the service's config.
type scaleSetSpec struct {
	name, label, jobID string
	max                int
}

// flowScaleSets are the example's two scale sets (scaleset.hcl).
var flowScaleSets = []scaleSetSpec{
	{name: "macos", label: "macos", jobID: macJobID, max: 2},
	{name: "linux", label: "linux", jobID: linuxJobID, max: 3},
}

// writeServiceConfig writes nomad-gha-scaleset's config for the flow.
func (fa *flowAgent) writeServiceConfig(t testing.TB, gh *actionssim.Server, sets []scaleSetSpec) (path, listen string) {
	t.Helper()
	listen = testutil.FreeLoopbackAddr(t)
	var b strings.Builder
	fmt.Fprintf(&b, `github_config_url = %q
listen_address    = %q
shutdown_timeout  = "20s"
github_http_retry_max      = 2
github_http_retry_wait_max = "500ms"
`, gh.OrgConfigURL("acme"), listen)
	for _, s := range sets {
		fmt.Fprintf(&b, `
scale_set %q {
  labels                   = [%q]
  max_runners              = %d
  backend                  = "nomad"
  reconcile_interval       = "500ms"
  runner_online_timeout    = "2m"
  start_backoff_min        = "200ms"
  start_backoff_max        = "2s"
  session_conflict_timeout = "30s"

  nomad {
    address            = %q
    token_file         = %q
    namespace          = %q
    job_id             = %q
    purge_grace_period = "2s"
  }
}
`, s.name, s.label, s.max, fa.agent.HTTPAddr, fa.tokenFile, runnerNS, s.jobID)
	}
	path = filepath.Join(t.TempDir(), "scaleset.hcl")
	must.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	return path, listen
}

const flowPAT = "ghp_REALAGENTE2ESECRETPAT0123456789"

// taskVMs are the VMs of tasks (not of the warm pool) in home.
func taskVMs(home string) []string { return vmsOfKind(home, tart.KindTask) }

// poolVMs are the warm pool's VMs in home.
func poolVMs(home string) []string { return vmsOfKind(home, tart.KindPool) }

// vmsOfKind lists home's VMs of one kind. It returns what it can read
// rather than fail: the observer samples it from its own goroutine.
func vmsOfKind(home string, kind tart.VMKind) []string {
	entries, _ := os.ReadDir(filepath.Join(home, "vms"))
	var out []string
	for _, e := range entries {
		if n, ok := tart.ParseVMName(e.Name()); ok && n.Kind == kind {
			out = append(out, e.Name())
		}
	}
	return out
}

// runnerContainers are the containers Nomad's docker driver made for this
// agent (their task directories are mounted from its data dir).
func (fa *flowAgent) runnerContainers(ctx context.Context) []string {
	if fa.docker == nil {
		return nil
	}
	list, err := fa.docker.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return nil
	}
	var out []string
	for _, c := range list {
		for _, m := range c.Mounts {
			if strings.HasPrefix(m.Source, fa.agent.DataDir+"/") {
				out = append(out, c.ID[:12]+" "+c.State)
				break
			}
		}
	}
	return out
}
