// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import "time"

// This file holds the JSON shapes of the Actions service as the official
// client reads them (reference sections 3.x). They are written out here on
// purpose instead of reusing github.com/actions/scaleset's types: the
// fidelity tests then catch a field-name mistake on either side.

// Label is a scale-set label as sent on the wire.
type Label struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

// Statistics is the RunnerScaleSetStatistic object. Every field is always
// serialised.
type Statistics struct {
	TotalAvailableJobs     int `json:"totalAvailableJobs"`
	TotalAcquiredJobs      int `json:"totalAcquiredJobs"`
	TotalAssignedJobs      int `json:"totalAssignedJobs"`
	TotalRunningJobs       int `json:"totalRunningJobs"`
	TotalRegisteredRunners int `json:"totalRegisteredRunners"`
	TotalBusyRunners       int `json:"totalBusyRunners"`
	TotalIdleRunners       int `json:"totalIdleRunners"`
}

type wireRunnerSetting struct {
	DisableUpdate bool `json:"disableUpdate,omitempty"`
	Ephemeral     bool `json:"ephemeral,omitempty"`
	IsElastic     bool `json:"isElastic,omitempty"`
}

type wireScaleSet struct {
	ID                 int               `json:"id,omitempty"`
	Name               string            `json:"name,omitempty"`
	RunnerGroupID      int               `json:"runnerGroupId,omitempty"`
	RunnerGroupName    string            `json:"runnerGroupName,omitempty"`
	Labels             []Label           `json:"labels,omitempty"`
	RunnerSetting      wireRunnerSetting `json:"RunnerSetting"`
	CreatedOn          time.Time         `json:"createdOn"`
	RunnerJitConfigURL string            `json:"runnerJitConfigUrl,omitempty"`
	Statistics         *Statistics       `json:"statistics,omitempty"`
}

type wireList[T any] struct {
	Count int `json:"count"`
	Value []T `json:"value"`
}

type wireRunnerGroup struct {
	ID        int    `json:"id"`
	Name      string `json:"name"`
	Size      int    `json:"size"`
	IsDefault bool   `json:"isDefaultGroup"`
}

type wireSession struct {
	SessionID               string        `json:"sessionId"`
	OwnerName               string        `json:"ownerName"`
	RunnerScaleSet          *wireScaleSet `json:"runnerScaleSet,omitempty"`
	MessageQueueURL         string        `json:"messageQueueUrl,omitempty"`
	MessageQueueAccessToken string        `json:"messageQueueAccessToken,omitempty"`
	Statistics              *Statistics   `json:"statistics"`
}

type wireMessage struct {
	MessageID   int64       `json:"messageId"`
	MessageType string      `json:"messageType"`
	Body        string      `json:"body"`
	Statistics  *Statistics `json:"statistics"`
}

// wireJobMessage is one element of a message body's inner array. The
// per-type fields are pointers or omitempty so that each type carries only
// its own extras, as the real service does.
type wireJobMessage struct {
	MessageType        string    `json:"messageType"`
	RunnerRequestID    int64     `json:"runnerRequestId"`
	RepositoryName     string    `json:"repositoryName"`
	OwnerName          string    `json:"ownerName"`
	JobID              string    `json:"jobId"`
	JobWorkflowRef     string    `json:"jobWorkflowRef"`
	JobDisplayName     string    `json:"jobDisplayName"`
	WorkflowRunID      int64     `json:"workflowRunId"`
	EventName          string    `json:"eventName"`
	RequestLabels      []string  `json:"requestLabels"`
	QueueTime          time.Time `json:"queueTime"`
	ScaleSetAssignTime time.Time `json:"scaleSetAssignTime"`
	RunnerAssignTime   time.Time `json:"runnerAssignTime"`
	FinishTime         time.Time `json:"finishTime"`
	AcquireJobURL      *string   `json:"acquireJobUrl,omitempty"`
	RunnerID           *int      `json:"runnerId,omitempty"`
	RunnerName         *string   `json:"runnerName,omitempty"`
	Result             *string   `json:"result,omitempty"`
}

type wireJITSetting struct {
	Name       string `json:"name"`
	WorkFolder string `json:"workFolder"`
}

type wireRunnerRef struct {
	ID               int    `json:"id"`
	Name             string `json:"name"`
	RunnerScaleSetID int    `json:"runnerScaleSetId"`
	// Extra fields the real service returns and the client ignores.
	Status    string `json:"status,omitempty"`
	Ephemeral bool   `json:"ephemeral"`
}

type wireJITConfig struct {
	Runner           wireRunnerRef `json:"runner"`
	EncodedJITConfig string        `json:"encodedJITConfig"`
}

// wireException is the .NET-style error body of the Actions service.
type wireException struct {
	ID             string `json:"$id"`
	InnerException any    `json:"innerException"`
	Message        string `json:"message"`
	TypeName       string `json:"typeName"`
	TypeKey        string `json:"typeKey"`
	ErrorCode      int    `json:"errorCode"`
	EventID        int    `json:"eventId"`
}

// wireGitHubError is the error body of the GitHub REST API.
type wireGitHubError struct {
	Message          string `json:"message"`
	DocumentationURL string `json:"documentation_url"`
	Status           string `json:"status,omitempty"`
}
