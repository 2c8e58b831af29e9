// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

// The whole flow on a real Nomad agent: the Actions simulator → the built
// nomad-gha-scaleset (nomad backend) → Nomad → the macOS runner job of
// examples/scaleset-dispatch on the tart driver (faketart, a warm pool) and
// the Linux runner job on Nomad's docker driver (the offline fakerunner
// image). Each job file is the example's, changed only where a test must
// (see adaptMacJob and adaptLinuxJob).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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

const (
	// macImage is the image of the example's runner job and pool, seeded
	// into the agent's fake registry.
	macImage   = "ghcr.io/cirruslabs/macos-sequoia-xcode:latest"
	macJobID   = "github-runner-macos"
	linuxJobID = "github-runner-linux"
	poolName   = "macos-runner"
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

// observer follows the flow from the outside while it runs: every
// dispatched child (its payload is the runner's JIT config), the processes
// of the machine (no JIT config in any argv or environment), the VMs and
// containers the agent runs.
type observer struct {
	fa *flowAgent

	mu sync.Mutex
	// secrets: per child, the JIT config and the forms it could leak in
	secrets  map[string][]string
	alive    map[string]map[string]bool
	dupes    []string // runner names with two live children at once
	leaks    []string // where a secret was seen
	taskVMs  int      // most task VMs seen at once
	contSeen int      // most runner containers seen at once
	errs     []string
	samples  int
	// canaryIn records where the scan saw the canary's made-up secret
	// ("cmdline", "environ").
	canaryIn map[string]bool

	stop chan struct{}
	done chan struct{}
}

// newObserver starts observing. A canary process holding a made-up secret
// in its argv and environment proves that the process scan sees a leak.
func newObserver(t testing.TB, fa *flowAgent) *observer {
	t.Helper()
	o := &observer{fa: fa, secrets: map[string][]string{}, alive: map[string]map[string]bool{}, canaryIn: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	canary := fmt.Sprintf("canary-secret-%d", time.Now().UnixNano())
	// one process: the canary is its argv[0] and in its environment
	cmd := exec.Command("sleep", "600")
	cmd.Args[0] = canary
	cmd.Env = append(os.Environ(), "CANARY_SECRET="+canary)
	must.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	o.secrets[canaryOwner] = []string{canary}
	go o.loop()
	t.Cleanup(o.close)
	return o
}

func (o *observer) close() {
	select {
	case <-o.stop:
	default:
		close(o.stop)
	}
	<-o.done
}

func (o *observer) loop() {
	defer close(o.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		o.sample()
		select {
		case <-o.stop:
			return
		case <-tick.C:
		}
	}
}

func (o *observer) fail(format string, a ...any) {
	o.mu.Lock()
	o.errs = append(o.errs, fmt.Sprintf(format, a...))
	o.mu.Unlock()
}

// sample looks once at Nomad, the processes, the VMs and the containers.
func (o *observer) sample() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := o.fa.agent.API()
	q := (&api.QueryOptions{Namespace: runnerNS}).WithContext(ctx)
	stubs, _, err := c.Jobs().ListOptions(&api.JobListOptions{Fields: &api.JobListFields{Meta: true}}, q)
	if err == nil {
		live := map[string]map[string]bool{}
		for _, s := range stubs {
			if s.ParentID == "" {
				continue
			}
			o.mu.Lock()
			_, known := o.secrets[s.ID]
			o.mu.Unlock()
			if !known {
				if job, _, err := c.Jobs().Info(s.ID, q); err == nil && len(job.Payload) > 0 {
					o.mu.Lock()
					o.secrets[s.ID] = secretForms(string(job.Payload))
					o.mu.Unlock()
				}
			}
			if s.Status != "dead" {
				name := s.Meta[nomadbackendRunnerKey]
				if live[name] == nil {
					live[name] = map[string]bool{}
				}
				live[name][s.ID] = true
			}
		}
		o.mu.Lock()
		for name, ids := range live {
			if len(ids) > 1 && !slices.Contains(o.dupes, name) {
				o.dupes = append(o.dupes, name)
			}
		}
		o.alive = live
		o.mu.Unlock()
	}
	o.scanProcs()
	vms := taskVMs(o.fa.agent.TartHome)
	conts := o.fa.runnerContainers(ctx)
	o.mu.Lock()
	o.taskVMs = max(o.taskVMs, len(vms))
	o.contSeen = max(o.contSeen, len(conts))
	o.samples++
	o.mu.Unlock()
}

// secretForms is a JIT config as dispatched, base64-encoded again (as in
// Nomad's JSON), and its one-time credential.
func secretForms(blob string) []string {
	forms := []string{blob, base64.StdEncoding.EncodeToString([]byte(blob))}
	if cfg, err := actionssim.ParseJITConfig(blob); err == nil && len(cfg.RSAParams.D) >= 16 {
		forms = append(forms, cfg.RSAParams.D)
	}
	return forms
}

// allSecrets returns every secret form seen so far, by owner.
func (o *observer) allSecrets() map[string][]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string][]string, len(o.secrets))
	for owner, forms := range o.secrets {
		out[owner] = forms
	}
	return out
}

// scanProcs reads every process's argv and environment.
func (o *observer) scanProcs() {
	secrets := o.allSecrets()
	if len(secrets) == 0 {
		return
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		o.fail("read /proc: %v", err)
		return
	}
	self := fmt.Sprint(os.Getpid())
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == self {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err != nil {
				continue // gone, or a kernel thread
			}
			for owner, forms := range secrets {
				for _, s := range forms {
					if bytes.Contains(b, []byte(s)) {
						comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
						o.mu.Lock()
						if owner == canaryOwner {
							o.canaryIn[f] = true
						} else {
							o.leaks = append(o.leaks, fmt.Sprintf("%s: pid %s (%s) %s", owner, e.Name(), strings.TrimSpace(string(comm)), f))
						}
						o.mu.Unlock()
					}
				}
			}
		}
	}
}

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

// canaryOwner owns the canary's secret in observer.secrets.
const canaryOwner = "canary"

// burstRun is one burst through the service.
type burstRun struct {
	jobs       map[string]int // label → jobs
	duration   time.Duration
	killMidway bool
}

// runFlowBurst runs one burst and checks what must hold afterwards.
func runFlowBurst(t *testing.T, fa *flowAgent, br burstRun) {
	gh, err := actionssim.Start("", actionssim.Options{
		LongPollTimeout: time.Second, SessionIdleTimeout: 3 * time.Second, RunnerPollTimeout: 2 * time.Second,
		RunnerLostTimeout: 15 * time.Second, AssignTimeout: 2 * time.Minute,
	})
	must.NoError(t, err)
	t.Cleanup(gh.Close)
	obs := newObserver(t, fa)
	cfg, _ := fa.writeServiceConfig(t, gh, flowScaleSets)
	svc := startService(t, cfg, flowPAT)
	services := []*serviceProc{svc}

	wait := func(d time.Duration, what string, cond func(actionssim.Snapshot) bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), d)
		defer cancel()
		if err := gh.WaitFor(ctx, cond); err != nil {
			s := gh.Snapshot()
			t.Fatalf("waiting for %s: %v (jobs done %d/%d)\nservice logs:\n%s", what, err,
				len(s.JobsIn(actionssim.JobCompleted)), len(s.Jobs), tailLines(services[len(services)-1].logs.String(), 60))
		}
	}
	wait(time.Minute, "sessions", func(s actionssim.Snapshot) bool {
		for _, ss := range flowScaleSets {
			if got, ok := s.ScaleSetByName(ss.name); !ok || got.SessionID == "" {
				return false
			}
		}
		return true
	})
	total := 0
	for label, n := range br.jobs {
		gh.QueueJobs(n, br.duration, label)
		total += n
	}
	if br.killMidway {
		wait(2*time.Minute, "runners busy", func(s actionssim.Snapshot) bool { return len(s.JobsIn(actionssim.JobRunning)) >= 2 })
		svc.kill(t)
		svc = startService(t, cfg, flowPAT)
		services = append(services, svc)
	}
	wait(3*time.Minute, "all jobs done", func(s actionssim.Snapshot) bool { return len(s.JobsIn(actionssim.JobCompleted)) == total })
	wait(time.Minute, "no runner registration left", func(s actionssim.Snapshot) bool {
		return len(s.RunnersIn(actionssim.RunnerOffline, actionssim.RunnerIdle, actionssim.RunnerBusy)) == 0
	})
	snap := gh.Snapshot()
	// one job per runner registration (a restarted service may reuse a
	// name once its first holder is gone)
	ranBy := map[int]string{}
	for _, j := range snap.Jobs {
		must.Eq(t, actionssim.ResultSucceeded, j.Result, must.Sprintf("job %s", j.ID))
		if prev, ok := ranBy[j.RunnerID]; ok {
			t.Errorf("runner %d (%s) ran two jobs (%s, %s)", j.RunnerID, j.RunnerName, prev, j.ID)
		}
		ranBy[j.RunnerID] = j.ID
	}
	must.LessEq(t, 5, snap.PeakOnline(), must.Sprint("more runners online at once than max_runners allow"))

	// nothing left in Nomad: every dispatched child purged
	c := fa.agent.API()
	q := &api.QueryOptions{Namespace: runnerNS}
	eventuallyT(t, 2*time.Minute, "every dispatched job purged", func() bool {
		stubs, _, err := c.Jobs().List(q)
		if err != nil {
			return false
		}
		for _, s := range stubs {
			if s.ParentID != "" {
				return false
			}
		}
		return true
	})
	obs.close()
	// no VM of a task, the warm pool at its size; no container
	eventuallyT(t, time.Minute, "no task VM left", func() bool { return len(taskVMs(fa.agent.TartHome)) == 0 })
	must.LessEq(t, 1, len(poolVMs(fa.agent.TartHome)))
	eventuallyT(t, time.Minute, "no runner container left", func() bool { return len(fa.runnerContainers(t.Context())) == 0 })

	obs.mu.Lock()
	defer obs.mu.Unlock()
	must.SliceEmpty(t, obs.errs)
	// the observer saw the runners (so the checks below are not vacuous)
	must.GreaterEq(t, total, len(obs.secrets)-1, must.Sprint("dispatched children seen (and the canary)"))
	// (a runner claiming the warm VM runs in it under its pool name: task
	// VMs are only cold starts, which a burst may not need)
	diag := must.Sprintf("%d samples, %d task VMs, %d containers at most", obs.samples, obs.taskVMs, obs.contSeen)
	must.Positive(t, obs.contSeen, diag)
	must.SliceEmpty(t, obs.dupes, must.Sprint("runner names with two live dispatched jobs"))
	must.Eq(t, map[string]bool{"cmdline": true, "environ": true}, obs.canaryIn, must.Sprint("the process scan saw the canary"))
	must.SliceEmpty(t, obs.leaks, must.Sprint("the JIT config in a process's argv or environment"))

	// the JIT config in no agent log, service log or task event
	var secrets []string
	for owner, forms := range obs.secrets {
		if owner != canaryOwner {
			secrets = append(secrets, forms...)
		}
	}
	logs := fa.agent.Logs()
	for _, s := range services {
		logs += s.logs.String()
	}
	events, claimed := allocEvents(t, fa)
	// the warm pool served runners, and no VM a runner ran in is left
	must.SliceNotEmpty(t, claimed, must.Sprint("no runner claimed the warm VM"))
	left := poolVMs(fa.agent.TartHome)
	for _, vm := range claimed {
		must.SliceNotContains(t, left, vm, must.Sprintf("VM %s a runner ran in is still there", vm))
	}
	for _, s := range secrets {
		must.StrNotContains(t, logs, s)
		must.StrNotContains(t, events, s)
	}
	must.StrNotContains(t, logs, flowPAT)
	if !br.killMidway {
		svc.stop(t)
	} else {
		must.StrContains(t, svc.logs.String(), "adopted dispatched runner job")
		svc.stop(t)
	}
}

var claimedVM = regexp.MustCompile(`Claimed warm VM (\S+)`)

// allocEvents is every allocation of the runners' namespace with its task
// events, as JSON (Nomad 1.6 keeps a purged job's allocations until GC),
// and the warm VMs the tasks claimed.
func allocEvents(t *testing.T, fa *flowAgent) (string, []string) {
	t.Helper()
	stubs, _, err := fa.agent.API().Allocations().List(&api.QueryOptions{Namespace: runnerNS})
	must.NoError(t, err)
	must.NotEq(t, 0, len(stubs))
	var b strings.Builder
	var claimed []string
	for _, s := range stubs {
		a, _, err := fa.agent.API().Allocations().Info(s.ID, &api.QueryOptions{Namespace: runnerNS})
		if err != nil {
			continue
		}
		raw, err := json.Marshal(a.TaskStates)
		must.NoError(t, err)
		b.Write(raw)
		for _, ts := range a.TaskStates {
			for _, e := range ts.Events {
				if m := claimedVM.FindStringSubmatch(e.DisplayMessage); m != nil {
					claimed = append(claimed, m[1])
				}
			}
		}
	}
	return b.String(), claimed
}

func eventuallyT(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNomadE2E_flow runs a burst of macOS and Linux jobs through the built
// service and a real agent, then the same burst with the service SIGKILLed
// midway and started again.
func TestNomadE2E_flow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the service, the driver, faketart and fakerunner and runs a real agent")
	}
	fa := startFlowAgent(t, nil, true)
	burst := map[string]int{"macos": 3, "linux": 4}
	t.Run("burst", func(t *testing.T) {
		runFlowBurst(t, fa, burstRun{jobs: burst, duration: time.Second})
	})
	t.Run("sigkill midway", func(t *testing.T) {
		runFlowBurst(t, fa, burstRun{jobs: burst, duration: 2 * time.Second, killMidway: true})
	})
}
