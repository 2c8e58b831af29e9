// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tartbackend

import "github.com/tartnomad/nomad-driver-tart/scaleset/backend"

var _ backend.WarmPool = (*Backend)(nil)

// WarmPoolStats implements backend.WarmPool: the pool's size and ready VMs
// (zero until the pool has booted some) and the warm and cold runner starts.
func (b *Backend) WarmPoolStats() backend.WarmPoolStats {
	st := backend.WarmPoolStats{Size: b.cfg.PoolSize, WarmStarts: b.warmStarts.Load(), ResumedStarts: b.resumedStarts.Load(), ColdStarts: b.coldStarts.Load()}
	for _, ps := range b.pool.Stats() {
		if ps.Name == b.poolName {
			st.Ready, st.TemplatesReady = ps.Ready, ps.TemplatesReady
		}
	}
	return st
}
