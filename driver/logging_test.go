// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/shoenig/test/must"
)

// testHclog returns an hclog logger at level writing plain lines to a
// buffer, the way Nomad's plugin logger formats them.
func testHclog(level hclog.Level) (hclog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return hclog.New(&hclog.LoggerOptions{Name: "tart", Output: &buf, Level: level, DisableTime: true}), &buf
}

func Test_slogFor_levels(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		level slog.Level
		want  string
	}{
		{"trace", slog.LevelDebug - 4, "[TRACE]"},
		{"debug", slog.LevelDebug, "[DEBUG]"},
		{"info", slog.LevelInfo, "[INFO] "},
		{"warn", slog.LevelWarn, "[WARN] "},
		{"error", slog.LevelError, "[ERROR]"},
		{"above error", slog.LevelError + 4, "[ERROR]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hl, buf := testHclog(hclog.Trace)
			slogFor(hl).Log(t.Context(), tc.level, "running tart", "op", "list")
			must.Eq(t, tc.want+" tart: running tart: op=list\n", buf.String())
		})
	}
}

func Test_slogFor_filtersBelowTheHclogLevel(t *testing.T) {
	t.Parallel()
	hl, buf := testHclog(hclog.Info)
	l := slogFor(hl)
	must.False(t, l.Enabled(t.Context(), slog.LevelDebug))
	must.True(t, l.Enabled(t.Context(), slog.LevelInfo))
	l.Debug("dropped")
	l.Log(t.Context(), slog.LevelDebug-4, "dropped too")
	l.Info("kept")
	must.StrNotContains(t, buf.String(), "dropped")
	must.StrContains(t, buf.String(), "kept")

	off, buf := testHclog(hclog.Off)
	must.False(t, slogFor(off).Enabled(t.Context(), slog.LevelError))
	slogFor(off).Error("nothing")
	must.Eq(t, "", buf.String())
}

func Test_slogFor_attrsGroupsAndLoggerName(t *testing.T) {
	t.Parallel()
	hl, buf := testHclog(hclog.Trace)
	l := slogFor(hl)
	pool := l.With("logger", "pool")
	pool.Warn("failed to delete warm vm", "vm_name", "x", "error", errors.New("boom"))
	l.With("alloc_id", "a1").WithGroup("vm").With("slot", 1).Info("booted", "name", "v",
		slog.Group("run", "pid", 7), slog.Group("", "inline", true), slog.Attr{})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	must.Eq(t, []string{
		`[WARN]  tart.pool: failed to delete warm vm: vm_name=x error=boom`,
		`[INFO]  tart: booted: alloc_id=a1 vm.slot=1 vm.name=v vm.run.pid=7 vm.inline=true`,
	}, lines)
}
