// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Nomad status strings (nomad/structs).
const (
	jobStatusPending = "pending"
	jobStatusRunning = "running"
	jobStatusDead    = "dead"

	allocClientPending  = "pending"
	allocClientRunning  = "running"
	allocClientComplete = "complete"
	allocClientFailed   = "failed"
	allocDesiredRun     = "run"
	allocDesiredStop    = "stop"

	evalStatusPending  = "pending"
	evalStatusBlocked  = "blocked"
	evalStatusComplete = "complete"
	evalStatusCanceled = "canceled"

	dispatchLaunchSuffix = "/dispatch-"
)

type jobKey struct{ ns, id string }

// jobRec is one job in the state store. job holds Nomad's fields; its
// Payload is kept decoded (Nomad keeps it snappy-compressed and decodes it
// on read).
type jobRec struct {
	job     *api.Job
	summary *api.JobSummary
	allocs  []string
	evals   []string
}

// allocRec is one allocation and the runner behind it.
type allocRec struct {
	stub api.AllocationListStub
	task string
	// killTimeout is the task's kill_timeout (for the Killing event).
	killTimeout time.Duration
	cancel      context.CancelFunc // nil until a runner starts
	running     bool               // a runner goroutine owns the terminal transition
	// deleted: the job was purged. Nomad 2.x deletes a purged job's
	// allocations in the same write (DeleteJobTxn → deleteAllocsForJobTxn),
	// so they are no longer listed; a runner still stopping is counted by
	// RunningTasks until it returns.
	deleted bool
}

// nonTerminal is Nomad's !Allocation.TerminalStatus(): desired run and a
// client status that is not terminal.
func (a *allocRec) nonTerminal() bool {
	return a.stub.DesiredStatus == allocDesiredRun &&
		(a.stub.ClientStatus == allocClientPending || a.stub.ClientStatus == allocClientRunning)
}

// jobListStub is Nomad's structs.JobListStub as JSON.
type jobListStub struct {
	ID                string
	ParentID          string
	Name              string
	Namespace         string `json:",omitempty"`
	Datacenters       []string
	NodePool          string
	Multiregion       *api.Multiregion
	Type              string
	Priority          int
	Periodic          bool
	ParameterizedJob  bool
	Stop              bool
	Status            string
	StatusDescription string
	JobSummary        *api.JobSummary
	CreateIndex       uint64
	ModifyIndex       uint64
	JobModifyIndex    uint64
	SubmitTime        int64
	Meta              map[string]string `json:",omitempty"`
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// dispatchedID is Nomad's structs.DispatchedID:
// <parent>/dispatch-[<prefix>-]<unix seconds>-<first 8 chars of a UUID>.
func dispatchedID(parent, prefix string, t time.Time) string {
	u := newUUID()[:8]
	if prefix != "" {
		return fmt.Sprintf("%s%s%s-%d-%s", parent, dispatchLaunchSuffix, prefix, t.Unix(), u)
	}
	return fmt.Sprintf("%s%s%d-%s", parent, dispatchLaunchSuffix, t.Unix(), u)
}

func copyJob(j *api.Job) *api.Job {
	b, err := json.Marshal(j)
	if err != nil {
		return nil
	}
	var out api.Job
	if err := json.Unmarshal(b, &out); err != nil {
		return nil
	}
	return &out
}

func ptr[T any](v T) *T { return &v }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// commit takes the next index, marks tables written at it and wakes
// blocking queries. Caller holds mu.
func (s *Server) commit(tables ...string) uint64 {
	s.index++
	for _, t := range tables {
		s.tables[t] = s.index
	}
	s.poke()
	return s.index
}
