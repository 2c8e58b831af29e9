// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadagent

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/hashicorp/nomad/api"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/internal/testutil"
)

const testImage = "ghcr.io/cirruslabs/macos-sequoia-base:latest"

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.CleanupBuilds()
	os.Exit(code)
}

// A task is running (secrets tmpfs mounted, supervisor and faketart
// processes alive) when the agent is SIGKILLed; the teardown must still
// leave no process, no mount and no directory behind.
func TestNomadAgent_teardownAfterKill(t *testing.T) {
	var a *Agent
	t.Run("agent", func(t *testing.T) {
		a = Start(t, Options{ACL: true, Images: []string{testImage}})
		must.NotEq(t, "", a.Token)
		node := a.Node(t)
		must.Eq(t, "1", node.Attributes["driver.tart"])

		jobID := a.RunJobHCL(t, `
job "sleeper" {
  type = "batch"
  group "g" {
    task "t" {
      driver = "tart"
      config {
        image   = "ghcr.io/cirruslabs/macos-sequoia-base:latest"
        command = "sleep"
        args    = ["600"]
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}`)
		a.WaitAllocRunning(t, jobID)
		mounts, err := Mounts(a.root)
		must.NoError(t, err)
		must.SliceNotEmpty(t, mounts, must.Sprint("a root client mounts the task's secrets dir"))
		must.SliceNotEmpty(t, a.Processes())
		a.Kill(t)
	})
	must.SliceEmpty(t, a.Processes())
	mounts, err := Mounts(a.root)
	must.NoError(t, err)
	must.SliceEmpty(t, mounts)
	_, err = os.Stat(a.root)
	must.True(t, os.IsNotExist(err))
}

// A client-only agent joins a server agent, and both survive a restart of
// the client.
func TestNomadAgent_clientJoinsServer(t *testing.T) {
	srv := Start(t, Options{Name: "srv", Plugins: []string{}})
	cl := Start(t, Options{Name: "cl", Server: srv, Meta: map[string]string{"role": "extra"}})
	must.Eq(t, "extra", cl.Node(t).Meta["role"])
	nodes, _, err := srv.API().Nodes().List(nil)
	must.NoError(t, err)
	must.Len(t, 2, nodes)
	cl.Restart(t)
	must.Eq(t, api.NodeStatusReady, cl.Node(t).Status)
}

// Nomad's docker driver runs a container on the private engine; the
// teardown removes it although the agent was SIGKILLed.
func TestNomadAgent_docker(t *testing.T) {
	cli := testutil.DockerClient(t)
	ref := testutil.BuildImageFromBinary(t, cli, testutil.BuildBinary(t, "./internal/testutil/nomadagent/testdata/sleeper"),
		"nomadagent-kit")
	var allocID string
	t.Run("agent", func(t *testing.T) {
		a := Start(t, Options{Docker: true, Plugins: []string{}})
		jobID := a.RunJobHCL(t, fmt.Sprintf(`
job "docker-sleeper" {
  type = "batch"
  group "g" {
    task "t" {
      driver = "docker"
      config {
        image        = %q
        network_mode = "none"
      }
      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}`, ref))
		alloc := a.WaitAllocRunning(t, jobID)
		allocID = alloc.ID
		a.poll(t, "the container's output", func() (bool, string) {
			out := a.AllocLogs(t, alloc, "t", "stdout")
			return out == "sleeping\n", out
		})
		must.Len(t, 1, allocContainers(t, cli, allocID))
		a.Kill(t)
	})
	must.SliceEmpty(t, allocContainers(t, cli, allocID))
}

// allocContainers lists the containers Nomad's docker driver made for an
// allocation.
func allocContainers(t *testing.T, cli *client.Client, allocID string) []container.Summary {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", "com.hashicorp.nomad.alloc_id="+allocID))})
	must.NoError(t, err)
	return list
}
