// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// Client runs tart commands. It is safe for concurrent use.
type Client struct {
	runner commandRunner
	path   string
	home   string
	env    []string
	logger *slog.Logger
}

// Option configures a Client.
type Option func(*Client)

// withRunner replaces the commandRunner (tests use a recording fake).
func withRunner(r commandRunner) Option { return func(c *Client) { c.runner = r } }

// WithBinary sets the tart executable (default "tart", looked up in PATH).
func WithBinary(path string) Option { return func(c *Client) { c.path = path } }

// WithHome sets TART_HOME for every command (default: inherited TART_HOME,
// else ~/.tart).
func WithHome(dir string) Option { return func(c *Client) { c.home = dir } }

// WithEnv adds "K=V" environment entries to every command (e.g.
// "TART_NO_AUTO_PRUNE=1", registry credentials).
func WithEnv(kv ...string) Option {
	return func(c *Client) { c.env = append(c.env, kv...) }
}

// WithLogger sets the logger (default: discard). Each tart command is
// logged below slog.LevelDebug (at LevelDebug-4, hclog's trace).
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.logger = l
		}
	}
}

// NewClient returns a Client with the given options applied.
func NewClient(opts ...Option) *Client {
	c := &Client{runner: execRunner{}, path: "tart", logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Binary returns the tart executable the client runs.
func (c *Client) Binary() string { return c.path }

// levelTrace is the level of the per-command log lines: below
// slog.LevelDebug, where hclog has its trace level (the driver's adapter
// maps it there).
const levelTrace = slog.LevelDebug - 4

// ErrNoHome is returned by every command of a Client that has no TART_HOME
// to work in: no WithHome, no $TART_HOME and no $HOME. There is no
// fallback: a relative ".tart" would put VMs and state under whatever
// directory the process was started in.
var ErrNoHome = errors.New("no tart home: set TART_HOME (or the tart_home option) or HOME")

// Home returns the TART_HOME directory the commands use: the WithHome value,
// else $TART_HOME, else ~/.tart; "" when there is none (see CheckHome).
func (c *Client) Home() string {
	h, _ := c.resolveHome()
	return h
}

// CheckHome returns ErrNoHome when the client has no TART_HOME to work in.
// Every command checks it; callers that build paths from Home (state
// directories) check it first.
func (c *Client) CheckHome() error {
	_, err := c.resolveHome()
	return err
}

func (c *Client) resolveHome() (string, error) {
	if c.home != "" {
		return c.home, nil
	}
	if h := os.Getenv("TART_HOME"); h != "" {
		return h, nil
	}
	if u, err := os.UserHomeDir(); err == nil && u != "" {
		return filepath.Join(u, ".tart"), nil
	}
	return "", ErrNoHome
}

// Environ returns the environment entries every tart command of this client
// gets on top of the process environment (for a tart process started
// elsewhere, such as a supervisor's tart exec).
func (c *Client) Environ() []string { return c.environ() }

// VMDir returns the directory of the local VM name inside Home.
func (c *Client) VMDir(name string) string { return filepath.Join(c.Home(), "vms", name) }

// environ is what every tart command gets on top of the process
// environment. CI=1 makes progress output plain lines (parsable).
func (c *Client) environ() []string {
	env := []string{"CI=1"}
	if c.home != "" {
		env = append(env, "TART_HOME="+c.home)
	}
	return append(env, c.env...)
}

func (c *Client) command(args []string) command {
	return command{Path: c.path, Args: args, Env: c.environ()}
}

// exec runs one tart command to completion, capturing stdout and stderr.
// A non-zero exit becomes an *Error carrying tart's message.
func (c *Client) exec(ctx context.Context, op, vm string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := c.command(args)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := c.finish(ctx, op, vm, cmd, &stderr)
	return stdout.String(), err
}

func (c *Client) finish(ctx context.Context, op, vm string, cmd command, stderr fmt.Stringer) error {
	if err := c.CheckHome(); err != nil {
		return newError(op, vm, -1, "", err)
	}
	c.logger.Log(ctx, levelTrace, "running tart", "op", op, "vm_name", vm, "args", cmd.Args)
	code, err := c.runner.Run(ctx, cmd)
	if err != nil {
		return newError(op, vm, -1, stderr.String(), err)
	}
	if code != 0 {
		e := newError(op, vm, code, stderr.String(), nil)
		c.logger.Debug("tart command failed", "op", op, "vm_name", vm, "exit_code", code, "error", e.Message)
		return e
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers,
// keeping at most max bytes (the newest are dropped once full, so the first
// lines, where tart prints its errors, survive).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); b.max <= 0 || room >= len(p) {
		b.buf.Write(p)
	} else if room > 0 {
		b.buf.Write(p[:room])
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lastLine returns the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(stripANSI(lines[i])); l != "" {
			return l
		}
	}
	return ""
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	return ansiRE.ReplaceAllString(s, "")
}

// lineWriter calls fn for each complete line written (split on \n or \r,
// ANSI sequences removed, empty lines skipped).
type lineWriter struct {
	fn  func(string)
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexAny(w.buf, "\r\n")
		if i < 0 {
			break
		}
		line := strings.TrimSpace(stripANSI(string(w.buf[:i])))
		w.buf = w.buf[i+1:]
		if line != "" {
			w.fn(line)
		}
	}
	return len(p), nil
}

// Flush delivers a trailing line without newline.
func (w *lineWriter) Flush() {
	if line := strings.TrimSpace(stripANSI(string(w.buf))); line != "" {
		w.fn(line)
	}
	w.buf = nil
}

// ignore returns nil when err matches one of the sentinels.
func ignore(err error, sentinels ...error) error {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return nil
		}
	}
	return err
}

var _ io.Writer = (*lineWriter)(nil)
