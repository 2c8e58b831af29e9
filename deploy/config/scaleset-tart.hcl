# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# nomad-gha-scaleset on a single Mac: runners in Tart VMs, one VM kept
# booted so a job starts in seconds. Install as
# /usr/local/etc/nomad-gha-scaleset/scaleset.hcl (see the launchd job
# deploy/launchd/io.github.tartnomad.nomad-gha-scaleset.plist). Check it
# with: nomad-gha-scaleset check --config <this file>

github_config_url = "https://github.com/acme"
# Prometheus scrapes http://<mac>:9464/metrics.
listen_address = "0.0.0.0:9464"

github_app {
  client_id        = "Iv23liEXAMPLE0000000"
  installation_id  = 12345678
  private_key_file = "/usr/local/etc/nomad-gha-scaleset/github-app.pem"
}

scale_set "macos" {
  runner_scale_set_name = "macos-arm64"
  labels                = ["macos", "arm64"]
  # macOS allows two VMs per host: one warm, one running a job.
  max_runners = 2

  # A cold start may pull a multi-GB image first.
  runner_online_timeout = "20m"

  backend = "tart"

  tart {
    tart_path = "/opt/homebrew/bin/tart"
    image     = "ghcr.io/cirruslabs/macos-sequoia-xcode:latest"
    pool_size = 1
    max_vms   = 2
    cpu       = 4
    memory    = 8192
  }
}
