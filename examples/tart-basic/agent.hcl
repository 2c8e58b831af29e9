# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# The smallest client configuration: tart on PATH, no warm pool (every task
# cold-starts its VM).

data_dir   = "/opt/nomad/data"
plugin_dir = "/opt/nomad/plugins"

client {
  enabled = true
}

plugin "nomad-driver-tart" {
  config {
    max_vms = 2
  }
}
