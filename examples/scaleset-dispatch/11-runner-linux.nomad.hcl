# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# A one-job GitHub Actions runner in a Docker container, dispatched by
# nomad-gha-scaleset once per runner with the JIT configuration as the
# payload.
#
#   nomad job run 11-runner-linux.nomad.hcl
#
# The payload is written to the task's local/jitconfig, which the docker
# driver mounts at /local. The entrypoint script reads it inside the
# container, so the JIT configuration is in no host argv, in no container
# env (docker inspect) and in no log or event.

job "github-runner-linux" {
  type      = "batch"
  namespace = "github-runners"

  parameterized {
    payload       = "required"
    meta_required = ["runner_name", "runner_scale_set_name"]
    # The GitHub runner ID: a restarted service adopts the dispatched job
    # by it (optional, so jobs written without it still dispatch).
    meta_optional = ["runner_id"]
  }

  group "runner" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    task "runner" {
      driver = "docker"

      dispatch_payload {
        file = "jitconfig"
      }

      config {
        image      = "ghcr.io/actions/actions-runner:2.329.0"
        entrypoint = ["/bin/bash", "-c"]
        args = [
          "export ACTIONS_RUNNER_INPUT_JITCONFIG=\"$(cat /local/jitconfig)\" && rm -f /local/jitconfig; exec /home/runner/run.sh",
        ]
      }

      kill_signal  = "SIGINT"
      kill_timeout = "30s"

      resources {
        cpu    = 2000
        memory = 4096
      }
    }
  }
}
