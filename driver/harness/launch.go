// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// process is one running plugin: a connection plus the means to end it.
type process struct {
	conn *grpc.ClientConn
	pid  int // 0 in-process
	// kill ends the plugin abruptly (SIGKILL of the plugin PID only, like a
	// crash or go-plugin's last resort).
	kill func() error
	// stop ends it the way go-plugin's Client.Kill does on a graceful client
	// shutdown.
	stop func()
	// exited reports whether the plugin is gone.
	exited func() bool
}

// launcher starts a fresh plugin process.
type launcher interface {
	launch(t testing.TB, logger hclog.Logger) (*process, error)
	describe() string
}

// binaryLauncher starts a built plugin binary as Nomad's client does.
type binaryLauncher struct {
	path string
	args []string
	env  []string
}

func (l *binaryLauncher) describe() string { return l.path }

func (l *binaryLauncher) launch(_ testing.TB, logger hclog.Logger) (*process, error) {
	cmd := exec.Command(l.path, l.args...)
	// Nomad passes the agent's whole environment; go-plugin appends its own
	// variables. We add the test's extra variables after the host's so they
	// win, hence SkipHostEnv.
	cmd.Env = append(os.Environ(), l.env...)
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  handshake,
		Plugins:          plugin.PluginSet{pluginKey: &clientPlugin{}},
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
		StartTimeout:     time.Minute,
	})
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("start plugin %s (go-plugin handshake): %w", l.path, err)
	}
	raw, err := rpc.Dispense(pluginKey)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("dispense plugin %s: %w", l.path, err)
	}
	conn, ok := raw.(*grpc.ClientConn)
	if !ok {
		client.Kill()
		return nil, fmt.Errorf("dispense plugin %s: got %T, want a gRPC connection", l.path, raw)
	}
	pid := 0
	if rc := client.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	return &process{
		conn: conn,
		pid:  pid,
		kill: func() error {
			if pid == 0 {
				return errors.New("plugin PID unknown")
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill plugin pid %d: %w", pid, err)
			}
			// Kill reaps the process and stops go-plugin's goroutines; with
			// the process already dead it returns at once.
			client.Kill()
			return nil
		},
		stop:   client.Kill,
		exited: client.Exited,
	}, nil
}

// serverFactory returns the server half of a plugin set for a fresh driver.
type serverFactory func(hclog.Logger) (plugin.GRPCPlugin, error)

// inProcessLauncher serves a fresh driver over real gRPC in this process
// with go-plugin's test connection.
type inProcessLauncher struct {
	newServer serverFactory
}

func (l *inProcessLauncher) describe() string { return "in-process driver" }

func (l *inProcessLauncher) launch(t testing.TB, logger hclog.Logger) (*process, error) {
	server, err := l.newServer(logger)
	if err != nil {
		return nil, fmt.Errorf("create in-process driver: %w", err)
	}
	client, srv := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{pluginKey: &clientPlugin{server: server}})
	raw, err := client.Dispense(pluginKey)
	if err != nil {
		srv.Stop()
		_ = client.Close()
		return nil, fmt.Errorf("dispense in-process driver: %w", err)
	}
	conn, ok := raw.(*grpc.ClientConn)
	if !ok {
		srv.Stop()
		_ = client.Close()
		return nil, fmt.Errorf("dispense in-process driver: got %T, want a gRPC connection", raw)
	}
	done := make(chan struct{})
	end := func() {
		select {
		case <-done:
			return
		default:
		}
		close(done)
		// Stop the server before closing the client: Close asks the
		// server to stop too (go-plugin's controller), and two concurrent
		// Stops race inside go-plugin.
		srv.Stop()
		_ = client.Close()
	}
	return &process{
		conn: conn,
		// A crash cannot be reproduced in-process; dropping the server and
		// every connection is the closest thing: calls fail with
		// Unavailable and the old driver value is never used again.
		kill: func() error { end(); return nil },
		stop: end,
		exited: func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		},
	}, nil
}
