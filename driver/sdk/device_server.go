// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	devicepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/device"
	structspb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/structs"
)

// deviceServer serves a DevicePlugin as Nomad's BasePlugin and
// DevicePlugin gRPC services. It holds no state beyond the plugin.
type deviceServer struct {
	baseServer
	devicepb.UnimplementedDevicePluginServer

	d   DevicePlugin
	log hclog.Logger
	now func() time.Time
}

var (
	_ basepb.BasePluginServer     = (*deviceServer)(nil)
	_ devicepb.DevicePluginServer = (*deviceServer)(nil)
)

func newDeviceServer(d DevicePlugin, log hclog.Logger) *deviceServer {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &deviceServer{baseServer: baseServer{p: d, typ: basepb.PluginType_DEVICE}, d: d, log: log, now: time.Now}
}

// Fingerprint forwards the plugin's device groups and never ends or fails
// while the client listens: Nomad's client drops all of the plugin's
// devices until the agent restarts when the stream ends, errors, or
// carries a group or device its validation rejects. So a plugin that
// cannot start fingerprinting, or sends an invalid value, is logged and
// the stream stays open with what was last sent.
func (s *deviceServer) Fingerprint(_ *devicepb.FingerprintRequest, stream devicepb.DevicePlugin_FingerprintServer) error {
	ctx := stream.Context()
	ch, err := s.d.Fingerprint(ctx)
	if err != nil {
		s.log.Error("failed to start device fingerprinting; the stream stays open without devices", "error", err)
		ch = nil
	}
	return forward(ctx, ch, func(f *DeviceFingerprint) error {
		if f == nil {
			return nil
		}
		if err := validateDeviceFingerprint(f); err != nil {
			s.log.Error("device plugin sent an invalid fingerprint; not sent (Nomad would drop all devices)", "error", err)
			return nil
		}
		return stream.Send(deviceFingerprintToProto(f))
	})
}

// validateDeviceFingerprint applies the client's validation: non-empty
// vendor, type and name per group, a non-empty unique ID per device.
func validateDeviceFingerprint(f *DeviceFingerprint) error {
	var errs []error
	for i, g := range f.Groups {
		if g == nil {
			errs = append(errs, fmt.Errorf("group %d is nil", i))
			continue
		}
		if g.Vendor == "" || g.Type == "" || g.Name == "" {
			errs = append(errs, fmt.Errorf("group %d (%q/%q/%q): vendor, type and name must be set", i, g.Vendor, g.Type, g.Name))
		}
		seen := map[string]bool{}
		for j, d := range g.Devices {
			switch {
			case d == nil || d.ID == "":
				errs = append(errs, fmt.Errorf("group %d device %d: ID must be set", i, j))
			case seen[d.ID]:
				errs = append(errs, fmt.Errorf("group %d: device ID %q is duplicated", i, d.ID))
			default:
				seen[d.ID] = true
			}
		}
	}
	return errors.Join(errs...)
}

// Reserve answers with the plugin's reservation; an error fails the
// task's prestart with the plugin's message.
func (s *deviceServer) Reserve(ctx context.Context, req *devicepb.ReserveRequest) (*devicepb.ReserveResponse, error) {
	ids := req.GetDeviceIds()
	if len(ids) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no device IDs to reserve")
	}
	res, err := s.d.Reserve(ctx, ids)
	if err != nil {
		return nil, toStatus(ctx, fmt.Errorf("failed to reserve devices %v: %w", ids, err))
	}
	return &devicepb.ReserveResponse{ContainerRes: reservationToProto(res)}, nil
}

// Stats forwards the plugin's statistics until the client cancels.
func (s *deviceServer) Stats(req *devicepb.StatsRequest, stream devicepb.DevicePlugin_StatsServer) error {
	ctx := stream.Context()
	interval := req.GetCollectionInterval().AsDuration()
	if interval <= 0 {
		interval = defaultStatsInterval
	}
	ch, err := s.d.Stats(ctx, interval)
	if err != nil {
		return toStatus(ctx, fmt.Errorf("failed to start device stats: %w", err))
	}
	return forward(ctx, ch, func(b *DeviceStatsBatch) error {
		if b == nil {
			return nil
		}
		return stream.Send(deviceStatsToProto(b, s.now))
	})
}

func deviceFingerprintToProto(f *DeviceFingerprint) *devicepb.FingerprintResponse {
	p := &devicepb.FingerprintResponse{}
	for _, g := range f.Groups {
		pg := &devicepb.DeviceGroup{
			Vendor:     g.Vendor,
			DeviceType: g.Type,
			DeviceName: g.Name,
			Attributes: make(map[string]*structspb.Attribute, len(g.Attributes)),
		}
		for k, v := range g.Attributes {
			pg.Attributes[k] = attributeToProto(v)
		}
		for _, d := range g.Devices {
			pd := &devicepb.DetectedDevice{ID: d.ID, Healthy: d.Healthy, HealthDescription: d.HealthDescription}
			if d.PCIBusID != "" {
				pd.HwLocality = &devicepb.DeviceLocality{PciBusId: d.PCIBusID}
			}
			pg.Devices = append(pg.Devices, pd)
		}
		p.DeviceGroup = append(p.DeviceGroup, pg)
	}
	return p
}

// reservationToProto never returns nil: the client dereferences it.
func reservationToProto(r *DeviceReservation) *devicepb.ContainerReservation {
	p := &devicepb.ContainerReservation{}
	if r == nil {
		return p
	}
	p.Envs = maps.Clone(r.Envs)
	for _, m := range r.Mounts {
		p.Mounts = append(p.Mounts, &devicepb.Mount{TaskPath: m.TaskPath, HostPath: m.HostPath, ReadOnly: m.ReadOnly})
	}
	for _, d := range r.DeviceNodes {
		p.Devices = append(p.Devices, &devicepb.DeviceSpec{TaskPath: d.TaskPath, HostPath: d.HostPath, Permissions: d.Permissions})
	}
	return p
}

func deviceStatsToProto(b *DeviceStatsBatch, now func() time.Time) *devicepb.StatsResponse {
	p := &devicepb.StatsResponse{}
	for _, g := range b.Groups {
		pg := &devicepb.DeviceGroupStats{Vendor: g.Vendor, Type: g.Type, Name: g.Name,
			InstanceStats: make(map[string]*devicepb.DeviceStats, len(g.Instances))}
		for id, st := range g.Instances {
			if st == nil {
				continue
			}
			ts := st.Timestamp
			if ts.IsZero() {
				ts = now()
			}
			obj := &structspb.StatObject{Attributes: make(map[string]*structspb.StatValue, len(st.Stats))}
			for k, v := range st.Stats {
				obj.Attributes[k] = statValueToProto(v)
			}
			pg.InstanceStats[id] = &devicepb.DeviceStats{Summary: statValueToProto(st.Summary), Stats: obj, Timestamp: timestamppb.New(ts)}
		}
		p.Groups = append(p.Groups, pg)
	}
	return p
}
