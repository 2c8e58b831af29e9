// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"
	"github.com/zclconf/go-cty/cty"

	"github.com/tartnomad/nomad-driver-tart/device"
	"github.com/tartnomad/nomad-driver-tart/driver"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk"
	"github.com/tartnomad/nomad-driver-tart/driver/sdk/hclspec"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
	"github.com/tartnomad/nomad-driver-tart/sim/nomadsim"
)

const spdxHeader = "# Copyright (c) The nomad-driver-tart Authors\n# SPDX-License-Identifier: MPL-2.0\n"

// exampleDir is examples/scaleset-dispatch.
func exampleDir(t *testing.T) string {
	return filepath.Join(testutil.RepoRoot(t), "examples", "scaleset-dispatch")
}

// parseExample reads, format-checks and parses one example file.
func parseExample(t *testing.T, name string) ([]byte, *hclsyntax.Body) {
	t.Helper()
	path := filepath.Join(exampleDir(t), name)
	src, err := os.ReadFile(path)
	must.NoError(t, err)
	must.StrHasPrefix(t, spdxHeader, string(src))
	must.Eq(t, string(hclwrite.Format(src)), string(src), must.Sprintf("%s is not hclfmt-formatted", name))
	f, diags := hclparse.NewParser().ParseHCL(src, path)
	must.False(t, diags.HasErrors(), must.Sprint(diags.Error()))
	return src, f.Body.(*hclsyntax.Body)
}

// TestExamples_scalesetDispatch parses every file of
// examples/scaleset-dispatch and checks what the nomad backend and the
// drivers rely on; then it registers each runner job, as written, in the
// Nomad API double and starts the backend against it with the nomad block
// of scaleset.hcl, which runs the backend's own startup validation.
func TestExamples_scalesetDispatch(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(exampleDir(t), "*.hcl"))
	must.NoError(t, err)
	must.Eq(t, []string{
		"10-runner-macos.nomad.hcl", "11-runner-linux.nomad.hcl", "20-scaleset-service.nomad.hcl",
		"agent-linux.hcl", "agent-mac.hcl", "scaleset-acl-policy.hcl", "scaleset.hcl",
	}, baseNames(files))

	d := driver.New(nil)
	t.Run("agent-mac", func(t *testing.T) { checkMacAgent(t, d) })
	t.Run("agent-linux", func(t *testing.T) {
		_, body := parseExample(t, "agent-linux.hcl")
		plugins := blocks(body, "plugin")
		must.Len(t, 1, plugins)
		must.Eq(t, []string{"docker"}, plugins[0].Labels)
	})

	svc := checkServiceConfig(t)
	runnerNS := ""
	for _, ss := range svc.ScaleSets {
		runnerNS = nomadBlock(t, ss).Namespace
	}
	t.Run("acl-policy", func(t *testing.T) {
		_, body := parseExample(t, "scaleset-acl-policy.hcl")
		ns := blocks(body, "namespace")
		must.Len(t, 1, ns)
		must.Eq(t, []string{runnerNS}, ns[0].Labels)
		must.Eq(t, []string{"list-jobs", "read-job", "dispatch-job", "purge-job"}, attrStrings(t, ns[0].Body, "capabilities"))
		must.MapLen(t, 0, body.Attributes)
	})
	t.Run("service-job", func(t *testing.T) { checkServiceJob(t) })

	jobs := map[string]*api.Job{}
	t.Run("runner-macos", func(t *testing.T) {
		src, body := parseExample(t, "10-runner-macos.nomad.hcl")
		job, task := runnerJob(t, body)
		must.Eq(t, "tart", task.Driver)
		tc := tartTask(t, d, src, body)
		must.Eq(t, "local/"+task.DispatchPayload.File, tc.StdinFile)
		must.StrNotContains(t, strings.Join(tc.Args, " "), "NOMAD_META")
		jobs[*job.ID] = job
	})
	t.Run("runner-linux", func(t *testing.T) {
		_, body := parseExample(t, "11-runner-linux.nomad.hcl")
		job, task := runnerJob(t, body)
		must.Eq(t, "docker", task.Driver)
		cfg := blocks(taskBlocks(blocks(body, "job")[0].Body)[0].Body, "config")[0]
		args := strings.Join(attrStrings(t, cfg.Body, "args"), " ")
		// read inside the container from the mounted task dir, not passed
		// through docker's args or env
		must.StrContains(t, args, "/local/"+task.DispatchPayload.File)
		_, hasEnv := cfg.Body.Attributes["env"]
		must.False(t, hasEnv)
		jobs[*job.ID] = job
	})

	// The backend accepts each runner job with its scale set's nomad block.
	for _, ss := range svc.ScaleSets {
		t.Run("backend/"+ss.Name, func(t *testing.T) {
			job := jobs[nomadBlock(t, ss).JobID]
			must.NotNil(t, job, must.Sprintf("no example job %q", nomadBlock(t, ss).JobID))
			must.Eq(t, nomadBlock(t, ss).Namespace, *job.Namespace)
			sim := nomadsim.New()
			addr := sim.Start()
			t.Cleanup(sim.Close)
			must.NoError(t, sim.RegisterJob(job))
			cfg := *nomadBlock(t, ss)
			cfg.Address = addr
			b, err := nomadbackend.New(t.Context(), cfg, ss.RunnerScaleSetName, nil, nomadbackend.WithGetenv(func(string) string { return "" }))
			must.NoError(t, err)
			b.Shutdown(t.Context())
		})
	}
}

func checkMacAgent(t *testing.T, d *driver.Driver) {
	src, body := parseExample(t, "agent-mac.hcl")
	plugins := blocks(body, "plugin")
	must.Len(t, 2, plugins)
	must.Eq(t, []string{driver.BinaryName}, plugins[0].Labels)
	must.Eq(t, []string{device.BinaryName}, plugins[1].Labels)
	cfgs := blocks(plugins[0].Body, "config")
	must.Len(t, 1, cfgs)
	raw, err := hclspec.EncodePluginConfig(d.ConfigSchema(), inner(src, cfgs[0]))
	must.NoError(t, err)
	var pc driver.PluginConfig
	must.NoError(t, hclspec.Decode(d.ConfigSchema(), raw, &pc))
	must.NoError(t, pc.Validate())
	must.Len(t, 1, pc.Pools)
	must.Positive(t, pc.Pools[0].Size)

	// the slot device plugin counts the driver's slots
	dcfgs := blocks(plugins[1].Body, "config")
	must.Len(t, 1, dcfgs)
	dev := device.New(nil)
	raw, err = hclspec.EncodePluginConfig(dev.ConfigSchema(), inner(src, dcfgs[0]))
	must.NoError(t, err)
	must.NoError(t, dev.SetConfig(&sdk.PluginConfig{RawConfig: raw}))
	var dc device.Config
	must.NoError(t, hclspec.Decode(dev.ConfigSchema(), raw, &dc))
	must.NoError(t, dc.Validate())
	must.Eq(t, pc.MaxVMs, dc.MaxVMs, must.Sprint("max_vms must be the same in both plugin blocks"))

	// the macOS runner job claims from this pool with a matching image,
	// and holds one VM slot device
	jsrc, jbody := parseExample(t, "10-runner-macos.nomad.hcl")
	tc := tartTask(t, d, jsrc, jbody)
	must.Eq(t, pc.Pools[0].Name, tc.Pool)
	must.Eq(t, pc.Pools[0].Image, tc.Image)
	task := taskBlocks(blocks(jbody, "job")[0].Body)[0]
	res := blocks(task.Body, "resources")
	must.Len(t, 1, res)
	devs := blocks(res[0].Body, "device")
	must.Len(t, 1, devs)
	must.Eq(t, []string{device.Vendor + "/" + device.Type}, devs[0].Labels)
	must.Eq(t, int64(1), attrInt(t, devs[0].Body, "count"))
}

func tartTask(t *testing.T, d *driver.Driver, src []byte, body *hclsyntax.Body) driver.TaskConfig {
	task := taskBlocks(blocks(body, "job")[0].Body)[0]
	cfgs := blocks(task.Body, "config")
	must.Len(t, 1, cfgs)
	raw, err := hclspec.EncodeTaskConfig(d.TaskConfigSchema(), inner(src, cfgs[0]), &hclspec.TaskEnv{
		Env: map[string]string{"NOMAD_ALLOC_ID": "a", "NOMAD_JOB_NAME": "j"}})
	must.NoError(t, err)
	var tc driver.TaskConfig
	must.NoError(t, hclspec.Decode(d.TaskConfigSchema(), raw, &tc))
	must.NoError(t, tc.Validate())
	return tc
}

// runnerJob checks a parameterized runner job file and returns it as the
// API's Job (the fields the backend reads) and its one task.
func runnerJob(t *testing.T, body *hclsyntax.Body) (*api.Job, *api.Task) {
	jobsB := blocks(body, "job")
	must.Len(t, 1, jobsB)
	jb := jobsB[0]
	must.Eq(t, "batch", attrString(t, jb.Body, "type"))
	ns := attrString(t, jb.Body, "namespace")
	must.NotEq(t, "default", ns)
	params := blocks(jb.Body, "parameterized")
	must.Len(t, 1, params)
	pj := &api.ParameterizedJobConfig{
		Payload:      attrString(t, params[0].Body, "payload"),
		MetaRequired: attrStrings(t, params[0].Body, "meta_required"),
	}
	if _, ok := params[0].Body.Attributes["meta_optional"]; ok {
		pj.MetaOptional = attrStrings(t, params[0].Body, "meta_optional")
	}
	must.Eq(t, "required", pj.Payload)
	must.SliceContainsAll(t, []string{nomadbackend.DefaultRunnerNameMetaKey, nomadbackend.DefaultScaleSetMetaKey}, pj.MetaRequired)
	must.SliceContains(t, pj.MetaOptional, nomadbackend.DefaultRunnerIDMetaKey, must.Sprint("the runner ID, for adoption after a restart"))

	groups := blocks(jb.Body, "group")
	must.Len(t, 1, groups)
	// one-shot runners: never restarted in place or rescheduled
	for _, policy := range []string{"restart", "reschedule"} {
		p := blocks(groups[0].Body, policy)
		must.Len(t, 1, p, must.Sprintf("%s block", policy))
		must.Eq(t, int64(0), attrInt(t, p[0].Body, "attempts"))
	}
	tasks := blocks(groups[0].Body, "task")
	must.Len(t, 1, tasks)
	dp := blocks(tasks[0].Body, "dispatch_payload")
	must.Len(t, 1, dp)
	task := &api.Task{
		Name: tasks[0].Labels[0], Driver: attrString(t, tasks[0].Body, "driver"),
		DispatchPayload: &api.DispatchPayloadConfig{File: attrString(t, dp[0].Body, "file")},
	}
	must.NotEq(t, "", task.DispatchPayload.File)
	job := &api.Job{
		ID: &jb.Labels[0], Namespace: &ns, Type: ptr("batch"), ParameterizedJob: pj,
		TaskGroups: []*api.TaskGroup{{Name: &groups[0].Labels[0], Tasks: []*api.Task{task}}},
	}
	return job, task
}

// nomadBlock is ss's nomad {} block as the service decodes it.
func nomadBlock(t *testing.T, ss *config.ScaleSet) *nomadbackend.Config {
	t.Helper()
	bc, err := service.DecodeBackend(ss)
	must.NoError(t, err)
	must.NotNil(t, bc.Nomad)
	return bc.Nomad
}

// checkServiceConfig parses scaleset.hcl with the service's own parser and
// validates every nomad block.
func checkServiceConfig(t *testing.T) *config.Config {
	src, _ := parseExample(t, "scaleset.hcl")
	cfg, err := config.Parse(src, "scaleset.hcl")
	must.NoError(t, err)
	must.NotNil(t, cfg.GitHubApp)
	must.Eq(t, "/secrets/github-app.pem", cfg.GitHubApp.PrivateKeyFile)
	// the key file only exists in the task; stand in for it
	cfg.GitHubApp.PrivateKeyFile = ""
	must.NoError(t, cfg.ResolveSecrets(func(k string) string {
		if k == config.EnvPrefix+"GITHUB_APP_PRIVATE_KEY" {
			return testutil.RSAPrivateKeyPEM(t)
		}
		return ""
	}))
	must.NoError(t, cfg.Validate())
	must.NoError(t, service.ValidateBackends(cfg))
	must.Len(t, 2, cfg.ScaleSets)
	for _, ss := range cfg.ScaleSets {
		must.Eq(t, config.BackendNomad, ss.Backend)
		must.NotNil(t, nomadBlock(t, ss))
		must.Eq(t, "", nomadBlock(t, ss).Address, must.Sprint("inside Nomad the task API socket is used"))
		must.Eq(t, "", nomadBlock(t, ss).TokenFile, must.Sprint("inside Nomad the workload identity is used"))
	}
	return cfg
}

func checkServiceJob(t *testing.T) {
	_, body := parseExample(t, "20-scaleset-service.nomad.hcl")
	jb := blocks(body, "job")[0]
	must.Eq(t, "service", attrString(t, jb.Body, "type"))
	g := blocks(jb.Body, "group")[0]
	must.Eq(t, int64(1), attrInt(t, g.Body, "count"))
	svc := blocks(g.Body, "service")
	must.Len(t, 1, svc)
	check := blocks(svc[0].Body, "check")
	must.Len(t, 1, check)
	must.Eq(t, "/healthz", attrString(t, check[0].Body, "path"))
	task := blocks(g.Body, "task")[0]
	must.Len(t, 1, blocks(task.Body, "identity"))
	cfg := blocks(task.Body, "config")[0]
	must.Eq(t, []string{"run", "--config", "/local/scaleset.hcl"}, attrStrings(t, cfg.Body, "args"))
	var dest []string
	sawFile, sawVar := false, false
	for _, tpl := range blocks(task.Body, "template") {
		dest = append(dest, attrString(t, tpl.Body, "destination"))
		data := tpl.Body.Attributes["data"]
		if call, ok := data.Expr.(*hclsyntax.FunctionCallExpr); ok {
			must.Eq(t, "file", call.Name)
			v, diags := call.Args[0].Value(nil)
			must.False(t, diags.HasErrors())
			must.Eq(t, "scaleset.hcl", v.AsString())
			sawFile = true
			continue
		}
		if strings.Contains(attrString(t, tpl.Body, "data"), `nomadVar "nomad/jobs/nomad-gha-scaleset"`) {
			sawVar = true
			must.StrHasPrefix(t, "secrets/", attrString(t, tpl.Body, "destination"))
		}
	}
	must.True(t, sawFile)
	must.True(t, sawVar)
	must.SliceContains(t, dest, "local/scaleset.hcl")
	must.SliceContains(t, dest, "secrets/github-app.pem")
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	slices.Sort(out)
	return out
}

func blocks(body *hclsyntax.Body, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out
}

func taskBlocks(job *hclsyntax.Body) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, g := range blocks(job, "group") {
		out = append(out, blocks(g.Body, "task")...)
	}
	return out
}

func inner(src []byte, b *hclsyntax.Block) string {
	return string(src[b.OpenBraceRange.End.Byte:b.CloseBraceRange.Start.Byte])
}

func attrValue(t *testing.T, body *hclsyntax.Body, name string) cty.Value {
	t.Helper()
	a, ok := body.Attributes[name]
	must.True(t, ok, must.Sprintf("attribute %s missing", name))
	v, diags := a.Expr.Value(&hcl.EvalContext{})
	must.False(t, diags.HasErrors(), must.Sprint(diags.Error()))
	return v
}

func attrString(t *testing.T, body *hclsyntax.Body, name string) string {
	t.Helper()
	v := attrValue(t, body, name)
	must.Eq(t, cty.String, v.Type())
	return v.AsString()
}

func attrInt(t *testing.T, body *hclsyntax.Body, name string) int64 {
	t.Helper()
	v := attrValue(t, body, name)
	must.Eq(t, cty.Number, v.Type())
	n, _ := v.AsBigFloat().Int64()
	return n
}

func attrStrings(t *testing.T, body *hclsyntax.Body, name string) []string {
	t.Helper()
	v := attrValue(t, body, name)
	must.True(t, v.Type().IsTupleType() || v.Type().IsListType())
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e.AsString())
	}
	return out
}
