// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"context"
	"errors"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	basepb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/base"
	driverpb "github.com/tartnomad/nomad-driver-tart/driver/internal/pb/drivers"
	"github.com/tartnomad/nomad-driver-tart/driver/internal/wire"
)

// Handshake is Nomad's go-plugin handshake for every plugin type (app
// protocol 2, unchanged since Nomad 0.9).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  2,
	MagicCookieKey:   "NOMAD_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255",
}

// PluginKey is the plugin-set key our plugin is served and dispensed under.
// The key never crosses the wire in gRPC mode; Nomad's client uses "base"
// and "driver" on its side.
const PluginKey = "driver"

// GRPCPlugin is the go-plugin plugin for a Nomad task driver. On the serving
// side it registers the BasePlugin and Driver services for Driver on one
// gRPC server; on the client side (Driver nil) Dispense returns the
// module's internal client stubs (driver/internal/wire).
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin

	// Driver is served; unused on the client side.
	Driver Driver
	// Logger receives the adapter's own messages; nil discards them.
	Logger hclog.Logger
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers both services on s. go-plugin calls it once per
// plugin-set entry, so the set must hold this plugin only once.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Driver == nil {
		return errors.New("grpc plugin has no driver to serve")
	}
	srv := newServer(p.Driver, p.Logger)
	basepb.RegisterBasePluginServer(s, srv)
	driverpb.RegisterDriverServer(s, srv)
	return nil
}

// GRPCClient returns the driver's client stubs on the connection (a
// *wire.Client, which only this module's tests and harness can use).
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return wire.NewClient(conn), nil
}

// PluginSet returns the plugin set serving d (or, with d nil, the set a
// client dispenses PluginKey from).
func PluginSet(d Driver, logger hclog.Logger) plugin.PluginSet {
	return plugin.PluginSet{PluginKey: &GRPCPlugin{Driver: d, Logger: logger}}
}
