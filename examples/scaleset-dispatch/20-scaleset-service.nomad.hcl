# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# nomad-gha-scaleset running on Nomad. It listens to GitHub for jobs and
# dispatches 10-runner-macos / 11-runner-linux once per runner.
#
#   nomad namespace apply gha-scaleset
#   nomad var put -namespace gha-scaleset nomad/jobs/nomad-gha-scaleset \
#     github_app_private_key=@github-app.pem
#   nomad acl policy apply -namespace gha-scaleset -job nomad-gha-scaleset \
#     nomad-gha-scaleset scaleset-acl-policy.hcl
#   nomad job run 20-scaleset-service.nomad.hcl
#
# Run it from this directory: file("scaleset.hcl") is read when the job is
# submitted.

job "nomad-gha-scaleset" {
  type      = "service"
  namespace = "gha-scaleset"

  group "scaleset" {
    # Exactly one: GitHub allows one message session per scale set.
    count = 1

    network {
      port "http" {
        to = 9464
      }
    }

    # The start journals (state_dir: runner names and IDs, no secrets) live
    # in the allocation's data directory. It survives task restarts; sticky
    # and migrate carry it to a replacement allocation, so the next
    # process removes registrations a killed one left half-started.
    ephemeral_disk {
      sticky  = true
      migrate = true
      size    = 300
    }

    restart {
      attempts = 10
      interval = "30m"
      delay    = "15s"
      mode     = "delay"
    }

    service {
      name     = "nomad-gha-scaleset"
      provider = "nomad"
      port     = "http"
      # Prometheus scrapes /metrics on this service (nomad_sd_configs).
      tags = ["metrics"]

      check {
        name     = "healthz"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "scaleset" {
      driver = "docker"

      config {
        # FROM scratch, non-root; build it offline with `make image` (see
        # deploy/container/Dockerfile) and push it to your registry.
        image = "ghcr.io/tartnomad/nomad-gha-scaleset:0.1.0"
        args  = ["run", "--config", "/local/scaleset.hcl"]
        ports = ["http"]
      }

      # The workload identity: NOMAD_TOKEN for the task API socket
      # (secrets/api.sock), allowed what scaleset-acl-policy.hcl grants.
      identity {
        env         = true
        change_mode = "restart"
      }

      template {
        data        = file("scaleset.hcl")
        destination = "local/scaleset.hcl"
        change_mode = "restart"
      }

      # The GitHub App key from Nomad Variables; readable by this job's
      # workload identity only (nomad/jobs/<job>).
      template {
        data        = <<-EOT
        {{- with nomadVar "nomad/jobs/nomad-gha-scaleset" -}}{{ .github_app_private_key }}{{- end -}}
        EOT
        destination = "secrets/github-app.pem"
        perms       = "0400"
        # The image runs as user scaleset (65532), not root.
        uid         = 65532
        gid         = 65532
        change_mode = "restart"
      }

      env {
        NOMAD_GHA_SCALESET_STATE_DIR = "${NOMAD_ALLOC_DIR}/data/nomad-gha-scaleset"
      }

      # Runners keep running when the service restarts; it adopts them.
      kill_timeout = "45s"

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
