# Copyright (c) The nomad-driver-tart Authors
# SPDX-License-Identifier: MPL-2.0

# What nomad-gha-scaleset may do: list and read the runner jobs, dispatch
# them, and stop+purge the dispatched ones. Nothing else, and only in the
# runners' namespace. Attach it to the service job's workload identity:
#
#   nomad acl policy apply -namespace gha-scaleset -job nomad-gha-scaleset \
#     -description "nomad-gha-scaleset dispatches runners" \
#     nomad-gha-scaleset scaleset-acl-policy.hcl
#
# purge-job is Nomad 2.0's fine-grained capability for "nomad job stop
# -purge"; on Nomad 1.x replace it with submit-job.

namespace "github-runners" {
  capabilities = ["list-jobs", "read-job", "dispatch-job", "purge-job"]
}
