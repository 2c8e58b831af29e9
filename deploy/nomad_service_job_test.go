// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package deploy_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
	"github.com/tartnomad/nomad-driver-tart/internal/testutil/nomadagent"
	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

// TestNomad_serviceJobExample runs examples/scaleset-dispatch's service job
// (20-scaleset-service.nomad.hcl) with the image built from
// deploy/container on a real Nomad agent through Nomad's docker driver:
// its config template (scaleset.hcl, pointed at the Actions simulator), the
// GitHub App key rendered from Nomad Variables for the image's non-root
// user, and the nomad backend reaching Nomad through the task API socket.
// Both scale sets open their sessions and the service's health check
// passes. Test-only edits: host networking (the test engine has no bridge),
// a free port, the simulator's URL, min_runners 0 (no runner image can be
// pulled here) and no identity.change_mode (Nomad 1.7+; the agent is 1.6).
func TestNomad_serviceJobExample(t *testing.T) {
	cli := testutil.DockerClient(t)
	image := buildServiceImage(t, cli)
	a := nomadagent.Start(t, nomadagent.Options{Docker: true, Plugins: []string{}})
	c := a.API()
	dir := filepath.Join(testutil.RepoRoot(t), "examples", "scaleset-dispatch")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		must.NoError(t, err)
		return string(b)
	}

	// The simulator knows the example's App by its client ID and
	// installation ID, with a key made here.
	key, keyPEM := testutil.RSAPrivateKey(t)
	cfgText := read("scaleset.hcl")
	clientID := regexp.MustCompile(`client_id\s*=\s*"([^"]+)"`).FindStringSubmatch(cfgText)[1]
	instID, err := strconv.ParseInt(regexp.MustCompile(`installation_id\s*=\s*(\d+)`).FindStringSubmatch(cfgText)[1], 10, 64)
	must.NoError(t, err)
	gh, err := actionssim.Start("", actionssim.Options{
		Apps:            []actionssim.App{{ClientID: clientID, InstallationID: instID, PublicKey: &key.PublicKey}},
		LongPollTimeout: 300 * time.Millisecond, SessionIdleTimeout: 2 * time.Second,
	})
	must.NoError(t, err)
	t.Cleanup(gh.Close)

	port := freeLoopbackPort(t)
	cfgText = strings.Replace(cfgText, `"https://github.com/acme"`, strconv.Quote(gh.OrgConfigURL("acme")), 1)
	cfgText = strings.Replace(cfgText, `"0.0.0.0:9464"`, strconv.Quote(fmt.Sprintf("127.0.0.1:%d", port)), 1)
	cfgText = regexp.MustCompile(`min_runners(\s*)= \d+`).ReplaceAllString(cfgText, "min_runners$1= 0")

	for _, ns := range []string{"github-runners", "gha-scaleset"} {
		_, err := c.Namespaces().Register(&api.Namespace{Name: ns}, nil)
		must.NoError(t, err)
	}
	_, _, err = c.Variables().Create(&api.Variable{
		Namespace: "gha-scaleset", Path: "nomad/jobs/nomad-gha-scaleset",
		Items: api.VariableItems{"github_app_private_key": keyPEM},
	}, &api.WriteOptions{Namespace: "gha-scaleset"})
	must.NoError(t, err)
	a.RunJobHCL(t, read("10-runner-macos.nomad.hcl"))
	a.RunJobHCL(t, read("11-runner-linux.nomad.hcl"))

	job := read("20-scaleset-service.nomad.hcl")
	for old, repl := range map[string]string{
		`data        = file("scaleset.hcl")`:                   "data        = <<-EOT\n" + cfgText + "\nEOT",
		`image = "ghcr.io/tartnomad/nomad-gha-scaleset:0.1.0"`: fmt.Sprintf("image = %q\n        network_mode = \"host\"", image),
		"port \"http\" {\n        to = 9464\n      }":          fmt.Sprintf("port \"http\" {\n        static = %d\n      }", port),
		// identity.change_mode is Nomad 1.7+; the test agent is 1.6.
		"env         = true\n        change_mode = \"restart\"": "env = true",
	} {
		must.StrContains(t, job, old, must.Sprint("the example changed: update this test's edits"))
		job = strings.Replace(job, old, repl, 1)
	}
	id := a.RunJobHCL(t, job)
	alloc := a.WaitAllocRunning(t, id)

	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, name := range []string{"macos-arm64", "linux-x64"} {
		if err := gh.WaitFor(wctx, actionssim.HasSession(name)); err != nil {
			t.Fatalf("scale set %s never opened its session: %v\nalloc events: %s", name, err, nomadagent.TaskEvents(a.Alloc(t, alloc.ID)))
		}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	must.Eq(t, http.StatusOK, httpGet(t, base+"/readyz").code)
	must.StrContains(t, httpGet(t, base+"/metrics").body, `nomad_gha_scaleset_scale_set_ready{backend="nomad",name="linux-x64"} 1`)

	// state_dir is in the allocation's data directory, created and
	// written by the image's non-root user: one journal lock per scale set.
	files, _, err := c.AllocFS().List(a.Alloc(t, alloc.ID), "alloc/data/nomad-gha-scaleset", &api.QueryOptions{Namespace: "gha-scaleset"})
	must.NoError(t, err)
	var locks []string
	for _, f := range files {
		if strings.HasSuffix(f.Name, ".lock") {
			locks = append(locks, f.Name)
		}
	}
	must.Len(t, 2, locks, must.Sprintf("state_dir holds %v", files))

	// The job's Nomad service check sees /healthz passing.
	deadline := time.Now().Add(time.Minute)
	for {
		regs, _, err := c.Services().Get("nomad-gha-scaleset", &api.QueryOptions{Namespace: "gha-scaleset"})
		must.NoError(t, err)
		if len(regs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service nomad-gha-scaleset not registered: %v", regs)
		}
		time.Sleep(200 * time.Millisecond) // poll interval
	}
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(testutil.FreeLoopbackAddr(t))
	must.NoError(t, err)
	n, err := strconv.Atoi(p)
	must.NoError(t, err)
	return n
}
