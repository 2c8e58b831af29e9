# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# A one-job GitHub Actions runner on macOS, dispatched once per job (for
# example by nomad-gha-scaleset) with the runner's JIT configuration as the
# dispatch payload:
#
#   nomad job dispatch -namespace ci-runners -meta runner_name=mac-42 \
#     github-runner-macos jitconfig.txt
#
# The payload is written to local/jitconfig on the host; the driver's
# supervisor reads it and hands it to the guest command on stdin. It never
# appears in a host process's argv or environment, in events or in logs.
# Inside the VM the runner reads it from ACTIONS_RUNNER_INPUT_JITCONFIG.

job "github-runner-macos" {
  type = "batch"

  # A namespace of its own: only the dispatcher's token may dispatch here,
  # and only operators may read allocations (which hold the payload).
  namespace = "ci-runners"

  parameterized {
    payload       = "required"
    meta_required = ["runner_name"]
    meta_optional = ["runner_labels"]
  }

  group "runner" {
    # One job per runner: a runner that fails is not restarted in place or
    # rescheduled; the scale set creates a new one.
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    task "runner" {
      driver = "tart"

      dispatch_payload {
        file = "jitconfig"
      }

      config {
        pool       = "macos"
        image      = "ghcr.io/cirruslabs/macos-sequoia-xcode:latest"
        stdin_file = "local/jitconfig"
        command    = "/bin/bash"
        args = [
          "-lc",
          "export ACTIONS_RUNNER_INPUT_JITCONFIG=\"$(cat)\" && cd \"$HOME/actions-runner\" && exec ./run.sh",
        ]
      }

      env {
        RUNNER_NAME = "${NOMAD_META_runner_name}"
      }

      # The runner finishes its step on SIGINT; give it time.
      kill_signal  = "SIGINT"
      kill_timeout = "30s"

      resources {
        cpu    = 4000
        memory = 8192
      }
    }
  }
}
