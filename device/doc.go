// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package device is the Nomad device plugin nomad-device-tart: it reports a
// Mac's VM slots as one device group, tart/vm/slot, so that Nomad's
// scheduler counts them as a resource and never places more VM tasks on a
// host than it has slots (a job asks with device "tart/vm" {}). Tasks that
// do not fit stay pending (a blocked evaluation) until a slot frees.
//
// Instances are the host's slots (max_vms, as the driver's), healthy while
// tart answers. Reserve hands a task its slot IDs as an environment
// variable, so the driver knows the scheduler accounted for it. Stats show
// each slot's use (busy, warm or free), read from the host state the driver
// itself keeps (tart.ReadSlotUse), not from a bookkeeping of our own. The
// plugin must not import github.com/hashicorp/nomad.
package device
