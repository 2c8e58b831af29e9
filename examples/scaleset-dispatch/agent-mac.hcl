# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# Nomad client on a Mac: runs the macOS runner jobs (10-runner-macos.nomad.hcl)
# in Tart VMs, with one VM kept booted so a dispatched runner starts in about
# a second.
#
#   sudo -u <gui-user> nomad agent -config=agent-mac.hcl
#
# Run the agent as the GUI user that owns TART_HOME (Tart needs the user's
# session). Copy the nomad-driver-tart and nomad-device-tart binaries into
# plugin_dir first.

datacenter = "dc1"
data_dir   = "/opt/nomad/data"
plugin_dir = "/opt/nomad/plugins"

client {
  enabled = true
  servers = ["nomad.example.internal:4647"]

  meta {
    runner_os = "macos"
  }
}

# The label must equal the plugin's file name in plugin_dir; jobs use
# driver = "tart".
plugin "nomad-driver-tart" {
  config {
    tart_path = "/opt/homebrew/bin/tart"

    # macOS allows two guests per host: one warm VM plus one runner VM.
    max_vms = 2

    # A task without a device "tart/vm" reservation waits this long for a
    # free VM slot, then fails with a recoverable error. Runner jobs hold a
    # reservation and never wait: the scheduler only places them here when
    # a slot is free.
    slot_wait_timeout = "2m"

    # Delete VMs of ours that no task or pool owns.
    gc_interval     = "5m"
    gc_grace_period = "15m"

    # Must match the runner job's config (image, cpu, memory) or name it
    # with pool = "macos-runner".
    pool {
      name   = "macos-runner"
      image  = "ghcr.io/cirruslabs/macos-sequoia-xcode:latest"
      size   = 1
      cpu    = 4
      memory = 8192
    }
  }
}

# The VM slots as a device (tart/vm/slot), so Nomad's scheduler places at
# most max_vms VM tasks on this Mac and queues the rest (blocked
# evaluations) until a slot frees. Jobs ask with device "tart/vm" {}.
plugin "nomad-device-tart" {
  config {
    tart_path = "/opt/homebrew/bin/tart"

    # Must equal the driver's max_vms; a difference shows in both plugins'
    # health and logs.
    max_vms = 2
  }
}
