// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package scripts_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

func runScript(t *testing.T, script string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(testutil.RepoRoot(t), "scripts", script), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCheckDeps: the shipped binaries pass the dependency rule; the
// simulators' binaries and a main package importing testing break it, and
// the failure names binary, package and importer.
func TestCheckDeps(t *testing.T) {
	const mod = "github.com/tartnomad/nomad-driver-tart/"
	out, err := runScript(t, "check-deps.sh")
	must.NoError(t, err, must.Sprint(out))
	must.Eq(t, "", out)

	out, err = runScript(t, "check-deps.sh", "./sim/cmd/...")
	must.Error(t, err)
	must.StrContains(t, out, "check-deps: "+mod+"sim/cmd/nomad-gha-scaleset-demo links "+mod+"sim/demo (imported by "+mod+"sim/cmd/nomad-gha-scaleset-demo)")
	must.StrContains(t, out, "check-deps: "+mod+"sim/cmd/fakerunner links "+mod+"sim/actionssim (imported by "+mod+"sim/fakerunner)")

	out, err = runScript(t, "check-deps.sh", "./scripts/testdata/usestesting")
	must.Error(t, err)
	must.StrContains(t, out, "check-deps: "+mod+"scripts/testdata/usestesting links testing (imported by "+mod+"scripts/testdata/usestesting)")
}

// TestCheckLinks: the repository's Markdown links resolve; in a page with
// dead links, exactly those are reported (not anchors, external links,
// inline code or fenced blocks).
func TestCheckLinks(t *testing.T) {
	out, err := runScript(t, "check-links.sh")
	must.NoError(t, err, must.Sprint(out))
	must.Eq(t, "", out)

	page := filepath.Join(testutil.RepoRoot(t), "scripts", "testdata", "links", "doc.md")
	out, err = runScript(t, "check-links.sh", page)
	must.Error(t, err)
	must.StrContains(t, out, "check-links: "+page+":4: missing.md does not exist\n")
	must.StrContains(t, out, "check-links: "+page+":10: ../nowhere/README.md does not exist\n")
	for _, fine := range []string{"usestesting", "example.com", "also-missing", "fenced-missing", "#a-page"} {
		must.StrNotContains(t, out, fine)
	}
}
