// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package wire

import (
	"google.golang.org/grpc"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	devicepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/device"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
)

// Client holds the generated gRPC stubs of both Nomad plugin services on
// one connection, as a Nomad client (or our test harness) uses them.
type Client struct {
	Base   basepb.BasePluginClient
	Driver driverpb.DriverClient
}

// NewClient returns the driver plugin's stubs on conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{Base: basepb.NewBasePluginClient(conn), Driver: driverpb.NewDriverClient(conn)}
}

// DeviceClient holds the generated gRPC stubs of a device plugin's two
// services on one connection, as a Nomad client (or our harness) uses them.
type DeviceClient struct {
	Base   basepb.BasePluginClient
	Device devicepb.DevicePluginClient
}

// NewDeviceClient returns the device plugin's stubs on conn.
func NewDeviceClient(conn *grpc.ClientConn) *DeviceClient {
	return &DeviceClient{Base: basepb.NewBasePluginClient(conn), Device: devicepb.NewDevicePluginClient(conn)}
}
