// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package nomadsim is an httptest double of the small part of Nomad's HTTP
// API that the scale-set service's nomad backend uses: dispatching a
// parameterized job, reading and listing jobs by prefix (with blocking
// queries and X-Nomad-Index), listing a job's allocations and evaluations,
// deregistering with purge, and ACL token checks.
//
// It behaves like a single-server Nomad cluster that is its own leader: the
// same paths, JSON field names (it encodes the types of
// github.com/hashicorp/nomad/api), status codes, plain-text error bodies,
// dispatched-ID format, 16 KiB payload limit and index semantics. It
// implements nothing more convenient than Nomad does; README.md lists every
// behaviour so it can be checked against a real agent.
//
// Tests drive allocation lifecycles through a TaskRunner called once per
// placed allocation (ProcessRunner starts a real process with the dispatch
// payload written into the task's local/ directory, as Nomad's
// dispatch_payload does), and placement through a Placement function
// (NoNodeWithDriver simulates a cluster without the job's driver).
//
// It imports only github.com/hashicorp/nomad/api from Nomad, never the
// server packages.
package nomadsim
