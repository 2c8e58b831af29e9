# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# A one-job GitHub Actions runner on macOS. nomad-gha-scaleset dispatches it
# once per runner with the runner's JIT configuration as the payload; its
# ID shows the runner: github-runner-macos/dispatch-<runner>-<time>-<hex>.
#
#   nomad namespace apply -description "GitHub Actions runners" github-runners
#   nomad job run 10-runner-macos.nomad.hcl
#
# The payload is written to the task's local/jitconfig; the tart driver
# hands that file to the guest command on stdin. The JIT configuration
# never appears in a host process's argv or environment, in task events or
# in logs. Inside the VM the runner reads it from
# ACTIONS_RUNNER_INPUT_JITCONFIG.

job "github-runner-macos" {
  type = "batch"

  # Only the scale-set service may dispatch here (scaleset-acl-policy.hcl);
  # reading allocations here means reading runner credentials.
  namespace = "github-runners"

  parameterized {
    payload = "required"

    # Sent by the service with every dispatch (the nomad backend checks
    # this list at startup).
    meta_required = ["runner_name", "runner_scale_set_name"]
    # The GitHub runner ID: a restarted service adopts the dispatched job
    # by it (optional, so jobs written without it still dispatch).
    meta_optional = ["runner_id"]
  }

  group "runner" {
    # One runner, one job: a runner that fails is neither restarted nor
    # rescheduled (its JIT configuration is single-use); the service
    # removes it from GitHub and starts a new one.
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
        pool       = "macos-runner"
        image      = "ghcr.io/cirruslabs/macos-sequoia-xcode:latest"
        cpu        = 4
        memory     = 8192
        stdin_file = "local/jitconfig"
        command    = "/bin/bash"
        args = [
          "-lc",
          "export ACTIONS_RUNNER_INPUT_JITCONFIG=\"$(cat)\" && cd \"$HOME/actions-runner\" && exec ./run.sh",
        ]
      }

      # The runner finishes the current step on SIGINT; give it time.
      kill_signal  = "SIGINT"
      kill_timeout = "30s"

      resources {
        cpu    = 4000
        memory = 8192

        # One VM slot of a Mac (nomad-device-tart): the scheduler never
        # places more runners on a Mac than it has slots; the others stay
        # pending, queued, until a slot frees.
        device "tart/vm" {
          count = 1
        }
      }
    }
  }
}
