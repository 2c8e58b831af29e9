// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"fmt"
	"maps"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	structspb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/structs"
)

// Measured-field names for CPUUsage.Measured and MemoryUsage.Measured; they
// are the names Nomad's CLI shows.
const (
	MeasuredSystemMode       = "System Mode"
	MeasuredUserMode         = "User Mode"
	MeasuredTotalTicks       = "Total Ticks"
	MeasuredThrottledPeriods = "Throttled Periods"
	MeasuredThrottledTime    = "Throttled Time"
	MeasuredPercent          = "Percent"

	MeasuredRSS            = "RSS"
	MeasuredCache          = "Cache"
	MeasuredMaxUsage       = "Max Usage"
	MeasuredKernelUsage    = "Kernel Usage"
	MeasuredKernelMaxUsage = "Kernel Max Usage"
	MeasuredUsage          = "Usage"
	MeasuredSwap           = "Swap"
)

var cpuMeasured = map[string]driverpb.CPUUsage_Fields{
	MeasuredSystemMode:       driverpb.CPUUsage_SYSTEM_MODE,
	MeasuredUserMode:         driverpb.CPUUsage_USER_MODE,
	MeasuredTotalTicks:       driverpb.CPUUsage_TOTAL_TICKS,
	MeasuredThrottledPeriods: driverpb.CPUUsage_THROTTLED_PERIODS,
	MeasuredThrottledTime:    driverpb.CPUUsage_THROTTLED_TIME,
	MeasuredPercent:          driverpb.CPUUsage_PERCENT,
}

var memoryMeasured = map[string]driverpb.MemoryUsage_Fields{
	MeasuredRSS:            driverpb.MemoryUsage_RSS,
	MeasuredCache:          driverpb.MemoryUsage_CACHE,
	MeasuredMaxUsage:       driverpb.MemoryUsage_MAX_USAGE,
	MeasuredKernelUsage:    driverpb.MemoryUsage_KERNEL_USAGE,
	MeasuredKernelMaxUsage: driverpb.MemoryUsage_KERNEL_MAX_USAGE,
	MeasuredUsage:          driverpb.MemoryUsage_USAGE,
	MeasuredSwap:           driverpb.MemoryUsage_SWAP,
}

// exitResultToProto never returns nil: Nomad dereferences results.
func exitResultToProto(r *ExitResult) *driverpb.ExitResult {
	if r == nil {
		return &driverpb.ExitResult{}
	}
	return &driverpb.ExitResult{
		ExitCode:  int32(r.ExitCode), //nolint:gosec // exit codes and signals fit
		Signal:    int32(r.Signal),   //nolint:gosec // exit codes and signals fit
		OomKilled: r.OOMKilled,
	}
}

// taskStatusToProto always sets both timestamps, as Nomad's own converter
// rejects a status without them.
func taskStatusToProto(s *TaskStatus) *driverpb.TaskStatus {
	p := &driverpb.TaskStatus{
		Id:          s.ID,
		Name:        s.Name,
		State:       driverpb.TaskState(s.State),
		StartedAt:   timestamppb.New(s.StartedAt),
		CompletedAt: timestamppb.New(s.CompletedAt),
	}
	if s.ExitResult != nil {
		p.Result = exitResultToProto(s.ExitResult)
	}
	return p
}

// taskStatsToProto always sets timestamp and agg_resource_usage: Nomad drops
// samples without the first and crashes without the second.
func taskStatsToProto(taskID string, u *TaskResourceUsage, now func() time.Time) *driverpb.TaskStats {
	if u == nil {
		u = &TaskResourceUsage{}
	}
	ts := u.Timestamp
	if ts.IsZero() {
		ts = now()
	}
	cpu := &driverpb.CPUUsage{
		SystemMode: u.CPU.SystemMode,
		UserMode:   u.CPU.UserMode,
		TotalTicks: u.CPU.TotalTicks,
		Percent:    u.CPU.Percent,
	}
	for _, name := range u.CPU.Measured {
		if f, ok := cpuMeasured[name]; ok {
			cpu.MeasuredFields = append(cpu.MeasuredFields, f)
		}
	}
	mem := &driverpb.MemoryUsage{
		Rss:      u.Memory.RSS,
		Cache:    u.Memory.Cache,
		Swap:     u.Memory.Swap,
		Usage:    u.Memory.Usage,
		MaxUsage: u.Memory.MaxUsage,
	}
	for _, name := range u.Memory.Measured {
		if f, ok := memoryMeasured[name]; ok {
			mem.MeasuredFields = append(mem.MeasuredFields, f)
		}
	}
	return &driverpb.TaskStats{
		Id:               taskID,
		Timestamp:        timestamppb.New(ts),
		AggResourceUsage: &driverpb.TaskResourceUsage{Cpu: cpu, Memory: mem},
	}
}

func taskEventToProto(e *TaskEvent, now func() time.Time) *driverpb.DriverTaskEvent {
	ts := e.Timestamp
	if ts.IsZero() {
		ts = now()
	}
	return &driverpb.DriverTaskEvent{
		TaskId:      e.TaskID,
		AllocId:     e.AllocID,
		TaskName:    e.TaskName,
		Timestamp:   timestamppb.New(ts),
		Message:     e.Message,
		Annotations: maps.Clone(e.Annotations),
	}
}

func capabilitiesToProto(c *Capabilities) *driverpb.DriverCapabilities {
	if c == nil {
		return &driverpb.DriverCapabilities{}
	}
	p := &driverpb.DriverCapabilities{
		SendSignals:          c.SendSignals,
		Exec:                 c.Exec,
		FsIsolation:          driverpb.DriverCapabilities_FSIsolation(c.FSIsolation),
		MustCreateNetwork:    c.MustInitiateNetwork,
		MountConfigs:         driverpb.DriverCapabilities_MountConfigs(c.MountConfigs),
		DisableLogCollection: c.DisableLogCollection,
		DynamicWorkloadUsers: c.DynamicWorkloadUsers,
	}
	for _, m := range c.NetIsolationModes {
		p.NetworkIsolationModes = append(p.NetworkIsolationModes, driverpb.NetworkIsolationSpec_NetworkIsolationMode(m))
	}
	return p
}

func fingerprintToProto(f *Fingerprint) *driverpb.FingerprintResponse {
	p := &driverpb.FingerprintResponse{
		Health:            driverpb.FingerprintResponse_HealthState(f.Health),
		HealthDescription: f.HealthDescription,
		Attributes:        make(map[string]*structspb.Attribute, len(f.Attributes)),
	}
	for k, v := range f.Attributes {
		p.Attributes[k] = attributeToProto(v)
	}
	return p
}

// attributeToProto maps Go values onto Nomad's typed attribute; an Attr
// adds its unit; other types are sent as their text.
func attributeToProto(v any) *structspb.Attribute {
	switch x := v.(type) {
	case Attr:
		a := attributeToProto(x.Value)
		a.Unit = x.Unit
		return a
	case string:
		return &structspb.Attribute{Value: &structspb.Attribute_StringVal{StringVal: x}}
	case bool:
		return &structspb.Attribute{Value: &structspb.Attribute_BoolVal{BoolVal: x}}
	case int:
		return &structspb.Attribute{Value: &structspb.Attribute_IntVal{IntVal: int64(x)}}
	case int32:
		return &structspb.Attribute{Value: &structspb.Attribute_IntVal{IntVal: int64(x)}}
	case int64:
		return &structspb.Attribute{Value: &structspb.Attribute_IntVal{IntVal: x}}
	case uint32:
		return &structspb.Attribute{Value: &structspb.Attribute_IntVal{IntVal: int64(x)}}
	case float32:
		return &structspb.Attribute{Value: &structspb.Attribute_FloatVal{FloatVal: float64(x)}}
	case float64:
		return &structspb.Attribute{Value: &structspb.Attribute_FloatVal{FloatVal: x}}
	default:
		return &structspb.Attribute{Value: &structspb.Attribute_StringVal{StringVal: fmt.Sprint(x)}}
	}
}

func pluginConfigFromProto(p *basepb.SetConfigRequest) *PluginConfig {
	cfg := &PluginConfig{RawConfig: p.GetMsgpackConfig(), APIVersion: p.GetPluginApiVersion()}
	if d := p.GetNomadConfig().GetDriver(); d != nil {
		cfg.Agent = &AgentConfig{ClientMaxPort: d.GetClientMaxPort(), ClientMinPort: d.GetClientMinPort()}
	}
	return cfg
}

// statValueToProto sets the wrapper fields for the kinds that are set.
func statValueToProto(v StatValue) *structspb.StatValue {
	p := &structspb.StatValue{Unit: v.Unit, Desc: v.Desc}
	if v.String != nil {
		p.StringVal = wrapperspb.String(*v.String)
	}
	if v.Bool != nil {
		p.BoolVal = wrapperspb.Bool(*v.Bool)
	}
	if v.Int != nil {
		p.IntNumeratorVal = wrapperspb.Int64(*v.Int)
	}
	if v.IntOf != nil {
		p.IntDenominatorVal = wrapperspb.Int64(*v.IntOf)
	}
	if v.Float != nil {
		p.FloatNumeratorVal = wrapperspb.Double(*v.Float)
	}
	if v.FloatOf != nil {
		p.FloatDenominatorVal = wrapperspb.Double(*v.FloatOf)
	}
	return p
}
