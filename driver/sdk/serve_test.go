// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package sdk

import (
	"bytes"
	"testing"

	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/version"
)

func Test_printVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{name: "long flag", args: []string{"--version"}, want: true},
		{name: "single dash", args: []string{"-version"}, want: true},
		{name: "no args", args: nil},
		{name: "plugin block args", args: []string{"-log", "--version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			must.Eq(t, tc.want, printVersion(tc.args, &out, "nomad-driver-tart"))
			if tc.want {
				must.Eq(t, version.Full("nomad-driver-tart")+"\n", out.String())
			} else {
				must.Eq(t, "", out.String())
			}
		})
	}
}

func TestServeConfig_handshake(t *testing.T) {
	t.Parallel()
	cfg := serveConfig(nil, nil)
	must.Eq(t, uint(2), cfg.ProtocolVersion)
	must.Eq(t, "NOMAD_PLUGIN_MAGIC_COOKIE", cfg.MagicCookieKey)
	must.Eq(t, "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255", cfg.MagicCookieValue)
	must.NotNil(t, cfg.GRPCServer)
	must.MapLen(t, 1, cfg.Plugins) // one entry: both services are registered once
}
