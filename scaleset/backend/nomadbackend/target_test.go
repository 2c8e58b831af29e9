// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

// The "Nomad under test" of the backend's case table (cases_test.go): the
// API double (nomadsim) or a real agent (realtarget_test.go). Both run the
// same parameterized job, whose task is a shell script the test steers
// through files in a control directory, so a case reads and asserts the
// same way on both.

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclsimple"
	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/sim/nomadsim"
)

// runnerNS is the runners' namespace of examples/scaleset-dispatch, which
// the example ACL policy is written for.
const runnerNS = "github-runners"

// nomadTarget is one Nomad under test.
type nomadTarget interface {
	// Name names the target in subtest names: "double" or "agent".
	Name() string
	// V16 reports that the target answers as Nomad 1.6 (the real agent);
	// the double follows 2.0.x. Cases branch on it only where the table
	// records a version difference.
	V16() bool
	// Addr is the HTTP address the backend talks to.
	Addr() string
	// API is a client with the management token. The namespace runnerNS
	// exists (the double has no namespace table: any name works).
	API() *api.Client
	// Token returns the secret of a token holding only policy's rights
	// (Nomad ACL policy HCL).
	Token(t testing.TB, policy string) string
	// CtlDir is the directory the runner tasks' script watches.
	CtlDir() string
	// NodeName is the client node allocations are placed on.
	NodeName() string
}

// nodeDrivers are the drivers the target's one client node has: the real
// agent's healthy drivers, and the double's placement model of them.
var nodeDrivers = []string{"raw_exec", "exec", "docker", "tart"}

// runnerScript is the runner task: it copies its payload and meta to the
// control directory (so a case sees what the task got), then waits for
// <ctl>/<runner>.exit and exits with the code written there. A stop kills
// the shell (SIGTERM on the double, SIGINT then SIGKILL on the agent).
const runnerScript = `d="$1"; n="$NOMAD_META_runner_name"
cp "$NOMAD_TASK_DIR/jitconfig" "$d/$n.payload.tmp" && mv "$d/$n.payload.tmp" "$d/$n.payload"
echo "$NOMAD_JOB_ID" > "$d/$n.started"
while [ ! -f "$d/$n.exit" ]; do sleep 0.05; done
exit "$(cat "$d/$n.exit")"`

// ctlJob is the parameterized runner job of the cases, shaped like
// examples/scaleset-dispatch/10-runner-macos.nomad.hcl but run by
// raw_exec (the same script on both targets): batch, payload required,
// the two meta keys required, no restart or reschedule.
func ctlJob(id, ctlDir string) *api.Job {
	return &api.Job{
		ID: ptr(id), Name: ptr(id), Type: ptr("batch"), Namespace: ptr(runnerNS), Datacenters: []string{"*"},
		ParameterizedJob: &api.ParameterizedJobConfig{
			Payload:      "required",
			MetaRequired: []string{nomadbackendRunnerKey, nomadbackendScaleSetKey},
		},
		TaskGroups: []*api.TaskGroup{{
			Name:             ptr("runner"),
			RestartPolicy:    &api.RestartPolicy{Attempts: ptr(0), Mode: ptr("fail")},
			ReschedulePolicy: &api.ReschedulePolicy{Attempts: ptr(0), Unlimited: ptr(false)},
			EphemeralDisk:    &api.EphemeralDisk{SizeMB: ptr(10)},
			Tasks: []*api.Task{{
				Name: "runner", Driver: "raw_exec",
				Config: map[string]any{
					"command": "/bin/sh",
					"args":    []any{"-c", runnerScript, "runner", ctlDir},
				},
				DispatchPayload: &api.DispatchPayloadConfig{File: "jitconfig"},
				KillTimeout:     ptr(2 * time.Second),
				Resources:       &api.Resources{CPU: ptr(20), MemoryMB: ptr(32)},
				LogConfig:       &api.LogConfig{MaxFiles: ptr(1), MaxFileSizeMB: ptr(1)},
			}},
		}},
	}
}

const (
	nomadbackendRunnerKey   = "runner_name"
	nomadbackendScaleSetKey = "runner_scale_set_name"
)

// register registers job (in its namespace) with the management token.
func register(t *testing.T, nt nomadTarget, job *api.Job) {
	t.Helper()
	_, _, err := nt.API().Jobs().Register(job, &api.WriteOptions{Namespace: *job.Namespace})
	must.NoError(t, err, must.Sprintf("register job %s on %s", *job.ID, nt.Name()))
}

// task control

// release makes runner's task exit with code.
func release(t *testing.T, nt nomadTarget, runner string, code int) {
	t.Helper()
	p := filepath.Join(nt.CtlDir(), runner+".exit")
	must.NoError(t, os.WriteFile(p+".tmp", []byte(strconv.Itoa(code)), 0o644))
	must.NoError(t, os.Rename(p+".tmp", p))
}

// taskPayload is what runner's task found in local/jitconfig ("" until it
// started).
func taskPayload(nt nomadTarget, runner string) string {
	b, _ := os.ReadFile(filepath.Join(nt.CtlDir(), runner+".payload"))
	return string(b)
}

// the double

type doubleTarget struct {
	sim    *nomadsim.Server
	addr   string
	client *api.Client
	ctl    string
}

// newDoubleTarget starts the API double with ACLs on, a placement model
// of the agent's node (its drivers) and a task runner that runs the task's
// raw_exec command and args as the agent's raw_exec driver would.
func newDoubleTarget(t *testing.T) *doubleTarget {
	t.Helper()
	ctl := t.TempDir()
	allocs := t.TempDir()
	runner := nomadsim.TaskRunnerFunc(func(ctx context.Context, task nomadsim.Task, started func()) (int, error) {
		cmd, _ := task.Task.Config["command"].(string)
		var args []string
		if raw, ok := task.Task.Config["args"].([]any); ok {
			for _, a := range raw {
				args = append(args, fmt.Sprint(a))
			}
		}
		kill := 5 * time.Second
		if task.Task.KillTimeout != nil {
			kill = *task.Task.KillTimeout
		}
		p := &nomadsim.ProcessRunner{Dir: allocs, Command: cmd, Args: args, KillTimeout: kill}
		return p.RunTask(ctx, task, started)
	})
	place := func(job *api.Job) *api.AllocationMetric {
		for _, tg := range job.TaskGroups {
			for _, task := range tg.Tasks {
				if !contains(nodeDrivers, task.Driver) {
					return nomadsim.NoNodeWithDriver()(job)
				}
			}
		}
		return nil
	}
	mgmt := "management-" + t.Name()
	sim := nomadsim.New(nomadsim.WithTaskRunner(runner), nomadsim.WithPlacement(place),
		nomadsim.WithACL(map[string]nomadsim.ACLToken{mgmt: {Management: true}}))
	addr := sim.Start()
	t.Cleanup(sim.Close)
	c, err := api.NewClient(&api.Config{Address: addr, SecretID: mgmt})
	must.NoError(t, err)
	t.Cleanup(c.Close)
	return &doubleTarget{sim: sim, addr: addr, client: c, ctl: ctl}
}

func (d *doubleTarget) Name() string     { return "double" }
func (d *doubleTarget) V16() bool        { return false }
func (d *doubleTarget) Addr() string     { return d.addr }
func (d *doubleTarget) API() *api.Client { return d.client }
func (d *doubleTarget) CtlDir() string   { return d.ctl }
func (d *doubleTarget) NodeName() string { return nomadsim.NodeName }
func (d *doubleTarget) Token(t testing.TB, policy string) string {
	t.Helper()
	secret := fmt.Sprintf("token-%d", time.Now().UnixNano())
	d.sim.SetACLToken(secret, nomadsim.ACLToken{Namespaces: policyCapabilities(t, policy)})
	return secret
}

// policyCapabilities reads the namespace rules of an ACL policy: the
// double takes capabilities, not policies.
func policyCapabilities(t testing.TB, policy string) map[string][]string {
	t.Helper()
	var p struct {
		Namespaces []struct {
			Name         string   `hcl:"name,label"`
			Capabilities []string `hcl:"capabilities"`
		} `hcl:"namespace,block"`
	}
	must.NoError(t, hclsimple.Decode("policy.hcl", []byte(policy), nil, &p))
	out := map[string][]string{}
	for _, ns := range p.Namespaces {
		out[ns.Name] = ns.Capabilities
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// countingProxy sits between the backend and a target and counts the
// requests per route, so "watching is blocking queries, not polling" is
// asserted the same way on both.
type countingProxy struct {
	url string
	mu  sync.Mutex
	n   map[string]int
}

var childPath = regexp.MustCompile(`^/v1/job/[^?]+?(/(allocations|evaluations|summary|dispatch))?$`)

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	must.NoError(t, err)
	p := &countingProxy{n: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	// a blocking query the backend abandons on shutdown is no error
	rp.ErrorLog = log.New(io.Discard, "", 0)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := r.URL.EscapedPath()
		if m := childPath.FindStringSubmatch(route); m != nil {
			route = "/v1/job/:id" + m[1]
		}
		p.mu.Lock()
		p.n[r.Method+" "+route]++
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})
	ts := newLoopbackServer(t, h)
	p.url = ts
	return p
}

// Requests is how many requests reached route, e.g. "GET /v1/jobs".
func (p *countingProxy) Requests(route string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[route]
}

func newLoopbackServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = srv.Close()
	})
	return "http://" + ln.Addr().String()
}

// examplePolicy is examples/scaleset-dispatch/scaleset-acl-policy.hcl as
// written, or, on Nomad 1.6 (which rejects the unknown capability
// purge-job), with submit-job in its place, as the file's comment says.
func examplePolicy(t testing.TB, v16 bool) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "examples", "scaleset-dispatch", "scaleset-acl-policy.hcl"))
	must.NoError(t, err)
	policy := string(b)
	must.StrContains(t, policy, `"purge-job"`)
	if v16 {
		policy = strings.ReplaceAll(policy, `"purge-job"`, `"submit-job"`)
	}
	return policy
}
