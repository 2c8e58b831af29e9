// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"context"
	"errors"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// handshake is Nomad's go-plugin handshake for driver plugins (reference 1.2).
// The harness keeps its own copy, written from the protocol reference rather
// than imported from driver/sdk, so that a wrong value in the SDK fails the
// tests instead of agreeing with itself.
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  2,
	MagicCookieKey:   "NOMAD_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255",
}

// pluginKey is the plugin-set key Nomad dispenses the long-lived driver
// with. In gRPC mode it never crosses the wire.
const pluginKey = "driver"

// clientPlugin is the client half of the plugin set: Dispense returns the raw
// connection, on which the harness builds the generated stubs.
type clientPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// server, when set, serves the driver (in-process mode, where go-plugin's
	// test connection uses the same plugin set on both sides).
	server plugin.GRPCPlugin
}

func (p *clientPlugin) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	if p.server == nil {
		return errors.New("harness: client-side plugin cannot serve")
	}
	return p.server.GRPCServer(b, s)
}

func (p *clientPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}
