// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"slices"
	"time"
)

// DefaultRunnerGroup is the name of the built-in runner group, id 1.
const DefaultRunnerGroup = "default"

// JobState is where a workflow job is in its life.
type JobState string

// Job states. A job moves queued → (available → acquired →) assigned →
// running → completed; an assignment that no runner takes in time goes
// back to queued.
const (
	// JobQueued: waiting for a matching scale set, for capacity, or for its
	// requeue delay.
	JobQueued JobState = "queued"
	// JobAvailable: offered to a scale set with JobAvailable (acquisition
	// flow only).
	JobAvailable JobState = "available"
	// JobAcquired: acquired by the listener, waiting for capacity.
	JobAcquired JobState = "acquired"
	// JobAssigned: assigned to a scale set (JobAssigned sent), waiting for a
	// runner of that scale set.
	JobAssigned JobState = "assigned"
	// JobRunning: a runner took it (JobStarted sent).
	JobRunning JobState = "running"
	// JobCompleted: finished (JobCompleted sent); Result says how.
	JobCompleted JobState = "completed"
)

// Job results as the service reports them in JobCompleted.
const (
	ResultSucceeded = "succeeded"
	ResultFailed    = "failed"
	ResultCanceled  = "canceled"
)

// RunnerState is a runner registration's state.
type RunnerState string

// Runner states.
const (
	// RunnerOffline: registered (JIT config generated) but not online, or
	// went offline.
	RunnerOffline RunnerState = "offline"
	// RunnerIdle: online, waiting for a job.
	RunnerIdle RunnerState = "idle"
	// RunnerBusy: running a job.
	RunnerBusy RunnerState = "busy"
	// RunnerDeleted: the registration is gone (job done, removed, or its
	// scale set deleted). Kept in Runners() for latency accounting.
	RunnerDeleted RunnerState = "deleted"
)

// JobSpec describes a workflow job to queue.
type JobSpec struct {
	// Labels are the job's runs-on labels. A job goes to a scale set whose
	// labels include all of them. Empty means "the scale set with the lowest
	// id", a test convenience.
	Labels []string
	// ScaleSetID, when set, targets that scale set directly and ignores
	// Labels for matching.
	ScaleSetID int
	// Duration is how long the fake runner "runs" the job.
	Duration time.Duration
	// Result is what the fake runner reports when done. Default "succeeded".
	Result string
	// Owner and Repository name the repository (defaults "octo-org",
	// "octo-repo").
	Owner, Repository string
	// WorkflowRef, DisplayName and EventName fill the job messages
	// (defaults derived from the repository, "build", "push").
	WorkflowRef, DisplayName, EventName string
}

// Job is a snapshot of one workflow job. Timestamps are zero until reached;
// AssignedAt is the latest assignment.
type Job struct {
	ID              string
	RunnerRequestID int64
	WorkflowRunID   int64
	Labels          []string
	Duration        time.Duration
	// Result is the requested result until the job completes, then the
	// actual one.
	Result      string
	State       JobState
	ScaleSetID  int
	RunnerID    int
	RunnerName  string
	Attempts    int
	Owner       string
	Repository  string
	WorkflowRef string
	DisplayName string
	EventName   string
	QueuedAt    time.Time
	AssignedAt  time.Time
	StartedAt   time.Time
	CompletedAt time.Time
}

// Runner is a snapshot of one runner registration.
type Runner struct {
	ID         int
	Name       string
	ScaleSetID int
	State      RunnerState
	// Redeemed is true once the JIT config was used.
	Redeemed bool
	// JobID is the job the runner took, if any.
	JobID      string
	CreatedAt  time.Time
	RedeemedAt time.Time
	OnlineAt   time.Time
	BusyAt     time.Time
	DeletedAt  time.Time
}

// ScaleSet is a snapshot of one scale set.
type ScaleSet struct {
	ID            int
	Name          string
	RunnerGroupID int
	Labels        []string
	// Tenant is the scope the scale set belongs to, e.g. "orgs/acme".
	Tenant       string
	SessionID    string
	SessionOwner string
	// MaxCapacity is the last X-ScaleSetMaxCapacity seen; -1 before any.
	MaxCapacity int
	// PendingMessages counts messages not yet acknowledged.
	PendingMessages int
	Statistics      Statistics
}

// Snapshot is a consistent view of the whole simulator, given to WaitFor
// conditions.
type Snapshot struct {
	ScaleSets []ScaleSet
	Jobs      []Job
	Runners   []Runner
}

// ScaleSetByName returns the first scale set with that name.
func (s Snapshot) ScaleSetByName(name string) (ScaleSet, bool) {
	for _, ss := range s.ScaleSets {
		if ss.Name == name {
			return ss, true
		}
	}
	return ScaleSet{}, false
}

// JobsIn returns the jobs in any of the given states.
func (s Snapshot) JobsIn(states ...JobState) []Job {
	var out []Job
	for _, j := range s.Jobs {
		if slices.Contains(states, j.State) {
			out = append(out, j)
		}
	}
	return out
}

// RunnersIn returns the runners in any of the given states.
func (s Snapshot) RunnersIn(states ...RunnerState) []Runner {
	var out []Runner
	for _, r := range s.Runners {
		if slices.Contains(states, r.State) {
			out = append(out, r)
		}
	}
	return out
}

// PeakOnline is the most runners that were online at once, each from
// coming online to its deletion (a registration whose runner never came
// online does not count). At equal times a deletion counts before a
// runner coming online.
func (s Snapshot) PeakOnline() int {
	type change struct {
		at    time.Time
		delta int
	}
	var changes []change
	for _, r := range s.Runners {
		if r.OnlineAt.IsZero() {
			continue
		}
		changes = append(changes, change{r.OnlineAt, +1})
		if !r.DeletedAt.IsZero() {
			changes = append(changes, change{r.DeletedAt, -1})
		}
	}
	slices.SortFunc(changes, func(a, b change) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	cur, peak := 0, 0
	for _, c := range changes {
		cur += c.delta
		peak = max(peak, cur)
	}
	return peak
}

// internal records

type tenant struct {
	id    int
	scope string // "orgs/acme", "repos/acme/app", "enterprises/big"
}

type session struct {
	id         string
	owner      string
	lastActive time.Time
	polls      int // GET message requests in flight
}

type queuedMessage struct {
	id   int64
	body []byte // the encoded envelope, kept for identical redelivery
}

type scaleSet struct {
	tenant    *tenant
	id        int
	name      string
	groupID   int
	labels    []Label
	setting   wireRunnerSetting
	createdOn time.Time

	session     *session
	maxCapacity int // -1 until reported

	queue   []queuedMessage  // cut, not yet acknowledged
	pending []wireJobMessage // events not yet cut into a message
	// lastStats is the statistics last sent in a message or session
	// response; a difference triggers a statistics-only message.
	lastStats Statistics
}

type job struct {
	Job
	notBefore time.Time // requeue delay
	target    int       // JobSpec.ScaleSetID
}

type runner struct {
	Runner
	tenant      *tenant
	clientID    string
	secret      string // one-time credential inside the JIT config
	accessToken string // issued by redeem, used for the runner API
	lastSeen    time.Time
	polls       int // runner job polls in flight
}

func (ss *scaleSet) labelNames() []string {
	out := make([]string, 0, len(ss.labels))
	for _, l := range ss.labels {
		out = append(out, l.Name)
	}
	return out
}

// matches reports whether a job with these labels may run on ss.
func (ss *scaleSet) matches(labels []string) bool {
	names := ss.labelNames()
	for _, l := range labels {
		if !slices.Contains(names, l) {
			return false
		}
	}
	return true
}
