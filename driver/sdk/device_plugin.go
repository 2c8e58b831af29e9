// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"context"
	"errors"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	devicepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/device"
	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
)

// devicePluginKey is the plugin-set key a device plugin is served and
// dispensed under (Nomad's client uses "base" and "device"; in gRPC mode
// the key never crosses the wire).
const devicePluginKey = "device"

// GRPCDevicePlugin is the go-plugin plugin for a Nomad device plugin. On
// the serving side it registers the BasePlugin and DevicePlugin services
// for Device on one gRPC server; on the client side (Device nil) Dispense
// returns the module's internal client stubs (driver/internal/wire).
type GRPCDevicePlugin struct {
	plugin.NetRPCUnsupportedPlugin

	// Device is served; unused on the client side.
	Device DevicePlugin
	// Logger receives the adapter's own messages; nil discards them.
	Logger hclog.Logger
}

var _ plugin.GRPCPlugin = (*GRPCDevicePlugin)(nil)

// GRPCServer registers both services on s; the plugin set must hold this
// plugin only once.
func (p *GRPCDevicePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Device == nil {
		return errors.New("grpc plugin has no device plugin to serve")
	}
	srv := newDeviceServer(p.Device, p.Logger)
	basepb.RegisterBasePluginServer(s, srv)
	devicepb.RegisterDevicePluginServer(s, srv)
	return nil
}

// GRPCClient returns the device plugin's client stubs on the connection (a
// *wire.DeviceClient, which only this module's tests and harness can use).
func (p *GRPCDevicePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return wire.NewDeviceClient(conn), nil
}

// devicePluginSet returns the plugin set serving d (or, with d nil, the
// set a client dispenses devicePluginKey from).
func devicePluginSet(d DevicePlugin, logger hclog.Logger) plugin.PluginSet {
	return plugin.PluginSet{devicePluginKey: &GRPCDevicePlugin{Device: d, Logger: logger}}
}

// ServeDevice runs the device plugin process for the binary named binary,
// as Serve does for a driver: --version prints the version; otherwise the
// JSON logger on stderr is created first and the plugin is served with
// Nomad's handshake, gRPC only.
func ServeDevice(binary string, newDevice func(hclog.Logger) DevicePlugin) {
	if printVersion(os.Args[1:], os.Stdout, binary) {
		return
	}
	logger := newLogger(os.Stderr)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         devicePluginSet(newDevice(logger), logger),
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}
