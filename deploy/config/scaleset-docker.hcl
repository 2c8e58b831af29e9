# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# nomad-gha-scaleset on a Linux host: runners as Docker containers. Install
# as /etc/nomad-gha-scaleset/scaleset.hcl (see the systemd unit
# deploy/systemd/nomad-gha-scaleset.service). Check it with:
#   sudo systemd-run --pipe --wait -p User=nomad-gha-scaleset -p SupplementaryGroups=docker \
#     /usr/local/bin/nomad-gha-scaleset check --config <this file>

github_config_url = "https://github.com/acme"
listen_address    = "0.0.0.0:9464"

github_app {
  client_id        = "Iv23liEXAMPLE0000000"
  installation_id  = 12345678
  # root:nomad-gha-scaleset, mode 0640.
  private_key_file = "/etc/nomad-gha-scaleset/github-app.pem"
}

scale_set "linux" {
  runner_scale_set_name = "linux-x64"
  labels                = ["linux", "x64"]
  min_runners           = 1
  max_runners           = 20

  backend = "docker"

  docker {
    image       = "ghcr.io/actions/actions-runner:latest"
    pull_policy = "missing"
    cpus        = 2
    memory      = "4g"
  }
}
