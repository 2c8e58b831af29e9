// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import (
	"context"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// slogFor returns a *slog.Logger (what package tart takes) whose records go
// to l, the plugin's hclog logger that Nomad reads. It is the one place the
// driver adapts between the two.
func slogFor(l hclog.Logger) *slog.Logger { return slog.New(&hclogHandler{l: l}) }

// hclogHandler is an slog.Handler writing to an hclog.Logger. Levels map
// to hclog's (below slog.LevelDebug is trace); attributes keep their keys,
// qualified by their groups as "group.key". slog has no logger names, so
// an attribute "logger" added with With (outside any group) names an hclog
// sub-logger instead: tart's pool logs with logger=pool, which stays the
// plugin's "…pool" logger it always was.
type hclogHandler struct {
	l hclog.Logger
	// prefix qualifies the keys of attributes added inside WithGroup.
	prefix string
}

var _ slog.Handler = (*hclogHandler)(nil)

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	default:
		return hclog.Error
	}
}

// Enabled reports whether l logs at level; records below its level are
// never built.
func (h *hclogHandler) Enabled(_ context.Context, level slog.Level) bool {
	threshold := h.l.GetLevel()
	return threshold != hclog.Off && hclogLevel(level) >= threshold
}

// Handle writes r with its attributes as hclog key/value pairs.
func (h *hclogHandler) Handle(_ context.Context, r slog.Record) error {
	args := make([]any, 0, 2*r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		args = appendAttr(args, h.prefix, a)
		return true
	})
	h.l.Log(hclogLevel(r.Level), r.Message, args...)
	return nil
}

// WithAttrs returns a handler whose hclog logger carries attrs.
func (h *hclogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	l := h.l
	var args []any
	for _, a := range attrs {
		if h.prefix == "" && a.Key == "logger" && a.Value.Kind() == slog.KindString {
			l = l.Named(a.Value.String())
			continue
		}
		args = appendAttr(args, h.prefix, a)
	}
	if len(args) > 0 {
		l = l.With(args...)
	}
	return &hclogHandler{l: l, prefix: h.prefix}
}

// WithGroup returns a handler that qualifies later keys with name.
func (h *hclogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &hclogHandler{l: h.l, prefix: h.prefix + name + "."}
}

// appendAttr appends a as key/value pairs, flattening groups into
// "group.key" keys, as slog's text handler writes them.
func appendAttr(args []any, prefix string, a slog.Attr) []any {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return args
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			args = appendAttr(args, p, ga)
		}
		return args
	}
	return append(args, prefix+a.Key, a.Value.Any())
}
