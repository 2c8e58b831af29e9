# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# A batch job whose task runs in a warm VM of the "macos" pool: the VM is
# claimed already booted, the command runs through the guest agent, the VM
# is deleted when the task ends and the pool boots a replacement.
#
#   nomad job run 01-batch.nomad.hcl
#   nomad alloc status <alloc>   # "Claimed warm VM ntart-pool-macos-0-... in 0.0s"
#   nomad alloc logs <alloc>

job "tart-batch" {
  type = "batch"

  group "build" {
    restart {
      attempts = 1
      mode     = "fail"
    }

    task "hello" {
      driver = "tart"

      config {
        pool    = "macos"
        image   = "ghcr.io/cirruslabs/macos-sequoia-xcode:latest"
        command = "/bin/zsh"
        args    = ["-lc", "sw_vers && xcodebuild -version && echo \"alloc $NOMAD_ALLOC_ID says $GREETING\""]
      }

      env {
        GREETING = "hello from a warm VM"
      }

      kill_timeout = "20s"

      resources {
        cpu    = 4000
        memory = 8192
      }
    }
  }
}
