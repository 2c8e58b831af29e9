# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# Nomad client on a Linux host with Docker: runs the Linux runner jobs
# (11-runner-linux.nomad.hcl) and the scale-set service itself
# (20-scaleset-service.nomad.hcl).
#
#   sudo nomad agent -config=agent-linux.hcl

datacenter = "dc1"
data_dir   = "/opt/nomad/data"

client {
  enabled = true
  servers = ["nomad.example.internal:4647"]

  meta {
    runner_os = "linux"
  }
}

plugin "docker" {
  config {
    # Runner containers are removed with their allocation; images stay
    # cached so the next runner starts quickly.
    gc {
      image       = true
      image_delay = "1h"
      container   = true
    }

    # Runners need no host privileges; keep them off.
    allow_privileged = false
  }
}
