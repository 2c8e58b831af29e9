// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tartbackend

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/shoenig/test/must"
)

func Test_hclogToSlog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := hclogToSlog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Named("pool").Warn("failed to delete warm vm", "vm_name", "x", "error", "boom")
	l.Debug("dropped below info")
	l.Info("kept")
	out := buf.String()
	must.StrContains(t, out, `level=WARN msg="failed to delete warm vm" vm_name=x error=boom logger=pool`)
	must.StrContains(t, out, "msg=kept")
	must.StrNotContains(t, out, "dropped")
}

func Test_hclogToSlog_traceReachesDebugHandler(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := hclogToSlog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Named("pool").Trace("running tart", "op", "list")
	must.StrContains(t, buf.String(), `level=DEBUG msg="running tart" op=list logger=pool`)
}
