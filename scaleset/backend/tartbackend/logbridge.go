// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tartbackend

import (
	"context"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogToSlog returns an hclog.Logger (what package tart takes) whose
// records go to l. The intercept logger's own output is turned off (not
// formatted into io.Discard, which it did for every tart command): the
// sink receives every level and leaves the filtering to l.
func hclogToSlog(l *slog.Logger) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	il.RegisterSink(slogSink{l: l})
	return il
}

type slogSink struct{ l *slog.Logger }

func (s slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	var lvl slog.Level
	switch level {
	case hclog.Trace, hclog.Debug:
		lvl = slog.LevelDebug
	case hclog.Warn:
		lvl = slog.LevelWarn
	case hclog.Error:
		lvl = slog.LevelError
	default:
		lvl = slog.LevelInfo
	}
	if !s.l.Enabled(context.Background(), lvl) {
		return
	}
	if name != "" {
		args = append(args, "logger", name)
	}
	s.l.Log(context.Background(), lvl, msg, args...)
}
