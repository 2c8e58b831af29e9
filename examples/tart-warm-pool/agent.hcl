# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# A Nomad client on a Mac that runs tasks in Tart VMs, keeping one macOS VM
# booted and ready so that a task starts in about a second.
#
#   nomad agent -config=agent.hcl   (as the GUI user that owns TART_HOME)

data_dir   = "/opt/nomad/data"
plugin_dir = "/opt/nomad/plugins" # holds the nomad-driver-tart binary

client {
  enabled = true
}

plugin "nomad-driver-tart" {
  config {
    tart_path = "/opt/homebrew/bin/tart"

    # Apple allows two macOS guests per host: one warm VM below plus one
    # task VM at a time.
    max_vms = 2

    # Applied to tasks and pools that set no cpu/memory of their own.
    default_cpu    = 4
    default_memory = 8192

    # Delete VMs of ours that no task or pool owns, once they are older
    # than the grace period.
    gc_interval     = "5m"
    gc_grace_period = "15m"

    # StartTask waits this long for a free slot, then fails with a
    # recoverable error (Nomad's restart policy retries).
    slot_wait_timeout = "1m"

    pool {
      name   = "macos"
      image  = "ghcr.io/cirruslabs/macos-sequoia-xcode:latest"
      size   = 1
      cpu    = 4
      memory = 8192

      # For sustained load (CI runners): also keep a suspended template
      # per slot and resume clones of it instead of booting (macOS 14+
      # host). See driver/README.md, "Resume mode".
      # mode = "resume"
    }
  }
}
