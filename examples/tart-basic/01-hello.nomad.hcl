# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# Cold-starts a Linux VM (pulled on first use), runs one command in it and
# deletes the VM.

job "tart-hello" {
  type = "batch"

  group "hello" {
    task "hello" {
      driver = "tart"

      config {
        image        = "ghcr.io/cirruslabs/ubuntu:latest"
        cpu          = 2
        memory       = 2048
        command      = "/bin/sh"
        args         = ["-c", "uname -a; echo hello from $NOMAD_JOB_NAME"]
        pull_policy  = "if_not_present"
        pull_timeout = "30m"
      }

      resources {
        cpu    = 2000
        memory = 2048
      }
    }
  }
}
