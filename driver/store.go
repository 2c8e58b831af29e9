// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import "sync"

// taskStore is the in-memory map of the tasks this process manages, by
// Nomad task ID. It is safe for concurrent use.
type taskStore struct {
	mu    sync.RWMutex
	tasks map[string]*taskHandle
}

func newTaskStore() *taskStore { return &taskStore{tasks: map[string]*taskHandle{}} }

// add stores h unless its ID is taken; it reports whether it was added.
func (s *taskStore) add(h *taskHandle) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tasks[h.id]; ok {
		return false
	}
	s.tasks[h.id] = h
	return true
}

func (s *taskStore) get(id string) (*taskHandle, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.tasks[id]
	return h, ok
}

func (s *taskStore) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tasks, id)
}

// vmNames returns the VMs of every stored task.
func (s *taskStore) vmNames() map[string]bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]bool, len(s.tasks))
	for _, h := range s.tasks {
		out[h.state.VMName] = true
	}
	return out
}
