// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"errors"
	"testing"

	"github.com/shoenig/test/must"
)

func TestClient_errorMapping(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		op      func(c *Client) error
		code    int
		stderr  string
		want    []error
		notWant []error
		msg     string
	}{
		{
			name: "stop missing vm exit 2",
			op:   func(c *Client) error { return c.Stop(context.Background(), "vm1", 0) },
			code: 2, stderr: "the specified VM \"vm1\" does not exist\n",
			want:    []error{ErrFailed, ErrVMNotFound, ErrNotFound},
			notWant: []error{ErrNotRunning},
			msg:     `the specified VM "vm1" does not exist`,
		},
		{
			name: "run missing vm validation quirk exit 1",
			op: func(c *Client) error {
				_, err := c.Get(context.Background(), "vm1")
				return err
			},
			code: 1, stderr: "Error: the specified VM \"vm1\" does not exist\n",
			want: []error{ErrVMNotFound, ErrNotFound},
			msg:  `Error: the specified VM "vm1" does not exist`,
		},
		{
			name: "stop not running",
			op:   func(c *Client) error { return c.Stop(context.Background(), "vm1", 0) },
			code: 2, stderr: "VM \"vm1\" is not running\n",
			want:    []error{ErrNotRunning},
			notWant: []error{ErrNotFound, ErrVMRunning},
		},
		{
			name: "delete running",
			op:   func(c *Client) error { return c.Delete(context.Background(), "vm1") },
			code: 1, stderr: "VM \"vm1\" is running\n",
			want:    []error{ErrVMRunning},
			notWant: []error{ErrNotRunning, ErrAlreadyRunning},
		},
		{
			name: "vm limit with hint",
			op:   func(c *Client) error { return c.Clone(context.Background(), "a", "b") },
			code: 1, stderr: "The number of VMs exceeds the system limit (other running VMs: a, b)\n",
			want:    []error{ErrVMLimit},
			notWant: []error{ErrVMRunning, ErrNotRunning},
		},
		{
			name: "vm limit raw framework error",
			op:   func(c *Client) error { return c.Clone(context.Background(), "a", "b") },
			code: 1, stderr: `Error Domain=VZErrorDomain Code=6 "The maximum supported number of active virtual machines has been reached." UserInfo={}` + "\n",
			want: []error{ErrVMLimit},
		},
		{
			name: "pull 404",
			op:   func(c *Client) error { return c.Pull(context.Background(), "ghcr.io/x/y:1", PullOptions{}) },
			code: 1, stderr: `Error: UnexpectedHTTPStatusCode(when: "pulling manifest", code: 404, details: "")` + "\n",
			want: []error{ErrImageNotFound, ErrNotFound},
		},
		{
			name: "usage exit 64 first non-empty line",
			op:   func(c *Client) error { return c.Clone(context.Background(), "a", "b") },
			code: 64, stderr: "\n\nError: Missing expected argument '<new-name>'\nUsage: tart clone <source> <new-name>\n",
			want: []error{ErrUsage},
			msg:  "Error: Missing expected argument '<new-name>'",
		},
		{
			name: "ip no address",
			op: func(c *Client) error {
				_, err := c.IP(context.Background(), "vm1", IPOptions{})
				return err
			},
			code: 1, stderr: "no IP address found, is your VM running?\n",
			want: []error{ErrNoIP},
		},
		{
			name: "other failure",
			op:   func(c *Client) error { return c.Set(context.Background(), "vm1", SetOptions{CPU: 2}) },
			code: 1, stderr: "VM should have 4 CPU cores at minimum (requested 2)\n",
			want:    []error{ErrFailed},
			notWant: []error{ErrNotFound, ErrVMLimit, ErrUsage},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeRunner{handler: func([]string) fakeResult { return fakeResult{code: tc.code, stderr: tc.stderr} }}
			err := tc.op(NewClient(withRunner(f)))
			must.Error(t, err)
			for _, w := range tc.want {
				must.ErrorIs(t, err, w)
			}
			for _, nw := range tc.notWant {
				must.False(t, errors.Is(err, nw), must.Sprintf("unexpectedly matches %v", nw))
			}
			var te *Error
			must.True(t, errors.As(err, &te))
			must.Eq(t, tc.code, te.ExitCode)
			if tc.msg != "" {
				must.Eq(t, tc.msg, te.Message)
			}
			must.StrContains(t, err.Error(), te.Message)
		})
	}
}

func TestClient_runnerErrorIsFailed(t *testing.T) {
	t.Parallel()
	boom := errors.New("exec: \"tart\": executable file not found in $PATH")
	f := &fakeRunner{handler: func([]string) fakeResult { return fakeResult{err: boom} }}
	err := NewClient(withRunner(f)).Delete(context.Background(), "vm1")
	must.ErrorIs(t, err, ErrFailed)
	must.ErrorIs(t, err, boom)
	must.StrContains(t, err.Error(), "executable file not found")
}
