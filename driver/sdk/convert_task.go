// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"maps"

	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
)

// taskConfigFromProto converts the TaskConfig Nomad sent. The result keeps
// the message, so a handle built from it echoes every field exactly,
// including those the native type does not model. Nil converts to nil.
func taskConfigFromProto(p *driverpb.TaskConfig) *TaskConfig {
	if p == nil {
		return nil
	}
	return &TaskConfig{
		ID:              p.GetId(),
		Name:            p.GetName(),
		JobName:         p.GetJobName(),
		JobID:           p.GetJobId(),
		TaskGroup:       p.GetTaskGroupName(),
		Namespace:       p.GetNamespace(),
		AllocID:         p.GetAllocId(),
		NodeName:        p.GetNodeName(),
		NodeID:          p.GetNodeId(),
		User:            p.GetUser(),
		Env:             maps.Clone(p.GetEnv()),
		DeviceEnv:       maps.Clone(p.GetDeviceEnv()),
		Resources:       resourcesFromProto(p.GetResources()),
		Mounts:          mountsFromProto(p.GetMounts()),
		AllocDir:        p.GetAllocDir(),
		StdoutPath:      p.GetStdoutPath(),
		StderrPath:      p.GetStderrPath(),
		RawDriverConfig: p.GetMsgpackDriverConfig(),
		wire:            p,
	}
}

// taskConfigToProto returns the message for c: the one it was converted
// from when there is one (an exact echo), otherwise one built from its
// fields (e.g. a test harness starting a task). Nil converts to nil.
func taskConfigToProto(c *TaskConfig) *driverpb.TaskConfig {
	if c == nil {
		return nil
	}
	if p, ok := c.wire.(*driverpb.TaskConfig); ok && p != nil {
		return p
	}
	return &driverpb.TaskConfig{
		Id:                  c.ID,
		Name:                c.Name,
		MsgpackDriverConfig: c.RawDriverConfig,
		Env:                 maps.Clone(c.Env),
		DeviceEnv:           maps.Clone(c.DeviceEnv),
		Resources:           resourcesToProto(c.Resources),
		Mounts:              mountsToProto(c.Mounts),
		User:                c.User,
		AllocDir:            c.AllocDir,
		StdoutPath:          c.StdoutPath,
		StderrPath:          c.StderrPath,
		TaskGroupName:       c.TaskGroup,
		JobName:             c.JobName,
		AllocId:             c.AllocID,
		JobId:               c.JobID,
		Namespace:           c.Namespace,
		NodeName:            c.NodeName,
		NodeId:              c.NodeID,
	}
}

func resourcesFromProto(p *driverpb.Resources) *Resources {
	if p == nil {
		return nil
	}
	alloc := p.GetAllocatedResources()
	linux := p.GetLinuxResources()
	r := &Resources{
		CPUShares:        alloc.GetCpu().GetCpuShares(),
		MemoryMB:         alloc.GetMemory().GetMemoryMb(),
		MemoryMaxMB:      alloc.GetMemory().GetMemoryMaxMb(),
		MemoryLimitBytes: linux.GetMemoryLimitBytes(),
		CPUSetCPUs:       linux.GetCpusetCpus(),
		PercentTicks:     linux.GetPercentTicks(),
	}
	if alloc.GetCpu() == nil {
		r.CPUShares = linux.GetCpuShares()
	}
	for _, port := range p.GetPorts() {
		r.Ports = append(r.Ports, PortMapping{
			Label: port.GetLabel(), Value: port.GetValue(), To: port.GetTo(), HostIP: port.GetHostIp(),
		})
	}
	return r
}

// resourcesToProto fills both the Nomad-level and the Linux view the way
// the Nomad client does.
func resourcesToProto(r *Resources) *driverpb.Resources {
	if r == nil {
		return nil
	}
	p := &driverpb.Resources{
		AllocatedResources: &driverpb.AllocatedTaskResources{
			Cpu:    &driverpb.AllocatedCpuResources{CpuShares: r.CPUShares},
			Memory: &driverpb.AllocatedMemoryResources{MemoryMb: r.MemoryMB, MemoryMaxMb: r.MemoryMaxMB},
		},
		LinuxResources: &driverpb.LinuxResources{
			CpuShares:        r.CPUShares,
			MemoryLimitBytes: r.MemoryLimitBytes,
			CpusetCpus:       r.CPUSetCPUs,
			PercentTicks:     r.PercentTicks,
		},
	}
	for _, port := range r.Ports {
		p.Ports = append(p.Ports, &driverpb.PortMapping{
			Label: port.Label, Value: port.Value, To: port.To, HostIp: port.HostIP,
		})
	}
	return p
}

func mountsFromProto(ps []*driverpb.Mount) []Mount {
	var out []Mount
	for _, m := range ps {
		out = append(out, Mount{
			TaskPath:        m.GetTaskPath(),
			HostPath:        m.GetHostPath(),
			Readonly:        m.GetReadonly(),
			PropagationMode: m.GetPropagationMode(),
		})
	}
	return out
}

func mountsToProto(ms []Mount) []*driverpb.Mount {
	var out []*driverpb.Mount
	for _, m := range ms {
		out = append(out, &driverpb.Mount{
			TaskPath:        m.TaskPath,
			HostPath:        m.HostPath,
			Readonly:        m.Readonly,
			PropagationMode: m.PropagationMode,
		})
	}
	return out
}

// handleFromProto converts a stored handle (RecoverTask). The task ID is
// handle.Config.ID. Nil converts to nil.
func handleFromProto(p *driverpb.TaskHandle) *TaskHandle {
	if p == nil {
		return nil
	}
	return &TaskHandle{
		Version:     int(p.GetVersion()),
		Config:      taskConfigFromProto(p.GetConfig()),
		State:       TaskState(p.GetState()),
		DriverState: p.GetDriverState(),
	}
}

// handleToProto converts a handle for Nomad to store. Version is at least
// 1 (0 means a pre-0.9 handle to Nomad) and State defaults to RUNNING.
func handleToProto(h *TaskHandle) *driverpb.TaskHandle {
	if h == nil {
		return nil
	}
	p := &driverpb.TaskHandle{
		Version:     int32(max(h.Version, 1)), //nolint:gosec // handle versions are small
		Config:      taskConfigToProto(h.Config),
		State:       driverpb.TaskState(h.State),
		DriverState: h.DriverState,
	}
	if p.State == driverpb.TaskState_UNKNOWN {
		p.State = driverpb.TaskState_RUNNING
	}
	return p
}
