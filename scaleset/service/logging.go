// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package service

import (
	"context"
	"log/slog"
	"strings"
)

// canceledAsDebug demotes the HTTP client's "request failed ... context
// canceled" records to debug: they are what a shutdown (or an ended long
// poll) looks like, not errors. A context ended by signal.NotifyContext
// carries its cause instead ("interrupt signal received", "terminated
// signal received"), which the client's error then quotes.
type canceledAsDebug struct{ slog.Handler }

func (h canceledAsDebug) Handle(ctx context.Context, r slog.Record) error {
	if r.Level <= slog.LevelDebug {
		return h.Handler.Handle(ctx, r)
	}
	canceled := false
	r.Attrs(func(a slog.Attr) bool {
		if v := a.Value.String(); strings.Contains(v, "context canceled") || strings.Contains(v, " signal received") {
			canceled = true
			return false
		}
		return true
	})
	if !canceled {
		return h.Handler.Handle(ctx, r)
	}
	if !h.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	d := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool { d.AddAttrs(a); return true })
	return h.Handler.Handle(ctx, d)
}

func (h canceledAsDebug) WithAttrs(as []slog.Attr) slog.Handler {
	return canceledAsDebug{h.Handler.WithAttrs(as)}
}

func (h canceledAsDebug) WithGroup(name string) slog.Handler {
	return canceledAsDebug{h.Handler.WithGroup(name)}
}
