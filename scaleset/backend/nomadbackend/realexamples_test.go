// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil/nomadagent"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
)

// exampleV16 lists what an example job file uses that Nomad 1.6 does not
// have (the examples are written for Nomad 1.10+): the file is validated
// on the agent with these lines removed, and the file as written must fail
// with want, so that a newer agent in CI shows the entry is obsolete.
var exampleV16 = map[string]struct {
	drop *regexp.Regexp
	want string
}{
	// identity { change_mode } came with Nomad 1.7
	"scaleset-dispatch/20-scaleset-service.nomad.hcl": {
		drop: regexp.MustCompile(`(?m)^\s*change_mode\s*=\s*"restart"\n(\s*\}\n)`),
		want: `An argument named "change_mode" is not expected here`,
	},
}

var jobNamespace = regexp.MustCompile(`(?m)^\s*namespace\s*=\s*"([^"]+)"`)

// TestNomadExamples_validateAndRegister runs every job file under examples/
// through `nomad job validate` against a real agent (in the file's own
// directory, for file()), then registers each parameterized runner job as
// written and starts the nomad backend against the scale-set example's
// ones with the example ACL policy's token.
func TestNomadExamples_validateAndRegister(t *testing.T) {
	agent := nomadagent.Start(t, nomadagent.Options{ACL: true, Plugins: []string{}})
	root := filepath.Join(testutil.RepoRoot(t), "examples")
	var files []string
	must.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".nomad.hcl") {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return err
	}))
	sort.Strings(files)
	must.SliceContainsAll(t, []string{
		"scaleset-dispatch/10-runner-macos.nomad.hcl", "scaleset-dispatch/11-runner-linux.nomad.hcl",
		"scaleset-dispatch/20-scaleset-service.nomad.hcl", "tart-basic/01-hello.nomad.hcl",
		"tart-warm-pool/01-batch.nomad.hcl", "tart-warm-pool/02-github-runner.nomad.hcl",
	}, files)

	// the namespaces the files name exist, as their READMEs have them created
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join(root, f))
		must.NoError(t, err)
		for _, m := range jobNamespace.FindAllStringSubmatch(string(src), -1) {
			_, err := agent.API().Namespaces().Register(&api.Namespace{Name: m[1]}, nil)
			must.NoError(t, err)
		}
	}

	validate := func(t *testing.T, dir, file string) (string, error) {
		cmd := exec.Command(nomadagent.Binary(t), "job", "validate", file)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "NOMAD_ADDR="+agent.HTTPAddr, "NOMAD_TOKEN="+agent.Token, "NOMAD_NAMESPACE=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, f := range files {
		t.Run("validate/"+f, func(t *testing.T) {
			dir, name := filepath.Split(filepath.Join(root, f))
			if v, ok := exampleV16[f]; ok {
				out, err := validate(t, dir, name)
				must.Error(t, err, must.Sprintf("%s validates on this agent as written: remove it from exampleV16", f))
				must.StrContains(t, out, v.want)
				src, err := os.ReadFile(filepath.Join(dir, name))
				must.NoError(t, err)
				adapted := v.drop.ReplaceAllString(string(src), "$1")
				must.NotEq(t, string(src), adapted)
				// in a copy of the directory, for the file's relative file() paths
				copyDir := t.TempDir()
				entries, err := os.ReadDir(dir)
				must.NoError(t, err)
				for _, e := range entries {
					if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil && !e.IsDir() {
						must.NoError(t, os.WriteFile(filepath.Join(copyDir, e.Name()), b, 0o644))
					}
				}
				must.NoError(t, os.WriteFile(filepath.Join(copyDir, name), []byte(adapted), 0o644))
				dir = copyDir
			}
			out, err := validate(t, dir, name)
			must.NoError(t, err, must.Sprint(out))
			must.StrContains(t, out, "Job validation successful")
			must.StrNotContains(t, out, "Warning")
		})
	}

	// register every parameterized runner job as written
	registered := map[string]*api.Job{}
	for _, f := range files {
		src, err := os.ReadFile(filepath.Join(root, f))
		must.NoError(t, err)
		if !strings.Contains(string(src), "parameterized {") {
			continue
		}
		// registered for the whole test (RunJobHCL purges it at the end)
		id := agent.RunJobHCL(t, string(src))
		job, err := agent.API().Jobs().ParseHCL(string(src), true)
		must.NoError(t, err)
		got, _, err := agent.API().Jobs().Info(id, &api.QueryOptions{Namespace: *job.Namespace})
		must.NoError(t, err, must.Sprint(f))
		must.NotNil(t, got.ParameterizedJob, must.Sprint(f))
		must.Eq(t, "running", *got.Status, must.Sprint(f))
		must.Eq(t, "batch", *got.Type, must.Sprint(f))
		registered[*got.Namespace+"/"+id] = got
	}
	must.MapContainsKeys(t, registered, []string{"github-runners/github-runner-macos", "github-runners/github-runner-linux"})

	// the backend starts against them as the scale-set example configures
	// it, with the example policy's rights only (submit-job for purge-job
	// on 1.6)
	token := newAgentTarget(t, agent.HTTPAddr, agent.Token, agent.NodeName).Token(t, examplePolicy(t, true))
	svc := checkServiceConfig(t)
	for _, ss := range svc.ScaleSets {
		t.Run("backend/"+ss.Name, func(t *testing.T) {
			cfg := *nomadBlock(t, ss)
			cfg.Address = agent.HTTPAddr
			b, err := nomadbackend.New(t.Context(), cfg, ss.RunnerScaleSetName, nil, nomadbackend.WithGetenv(func(k string) string {
				if k == "NOMAD_TOKEN" {
					return token
				}
				return ""
			}))
			must.NoError(t, err)
			list, err := b.ListRunners(t.Context())
			must.NoError(t, err)
			must.SliceEmpty(t, list)
			b.Shutdown(t.Context())
		})
	}
}
