# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# nomad-gha-scaleset configuration for the Nomad deployment: two runner
# scale sets, each backed by a parameterized Nomad job. 20-scaleset-service
# renders this file into the service task's local/scaleset.hcl.
#
# Inside the service task the nomad backend talks to the local Nomad agent
# through the task API socket (${NOMAD_SECRETS_DIR}/api.sock) with the
# task's workload identity (NOMAD_TOKEN), so no address or token is set
# here. Outside Nomad, set NOMAD_ADDR and NOMAD_TOKEN (or address and
# token_file below).

github_config_url = "https://github.com/acme"
listen_address    = "0.0.0.0:9464"
log_format        = "json"

github_app {
  client_id       = "Iv23liEXAMPLE0000000"
  installation_id = 12345678
  # Rendered from Nomad Variables by the service job's template.
  private_key_file = "/secrets/github-app.pem"
}

scale_set "macos" {
  runner_scale_set_name = "macos-arm64"
  labels                = ["macos", "arm64"]

  # Each Mac runs one runner VM next to its warm VM (Apple's two-VM limit):
  # keep max_runners at the number of Mac clients.
  min_runners = 0
  max_runners = 2

  # A cold start pulls a multi-GB image: allow it before giving up.
  runner_online_timeout = "20m"

  backend = "nomad"

  nomad {
    namespace          = "github-runners"
    job_id             = "github-runner-macos"
    id_prefix_template = "{runner_name}"
    purge_grace_period = "5m"
  }
}

scale_set "linux" {
  runner_scale_set_name = "linux-x64"
  labels                = ["linux", "x64"]
  min_runners           = 1
  max_runners           = 20
  runner_online_timeout = "5m"

  backend = "nomad"

  nomad {
    namespace = "github-runners"
    job_id    = "github-runner-linux"
  }
}
