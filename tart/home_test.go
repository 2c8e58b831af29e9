// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"testing"

	"github.com/shoenig/test/must"
)

// TestClient_refusesWithoutHome: with no WithHome, TART_HOME or HOME there
// is no relative ".tart" fallback; every command fails saying what to set,
// and nothing runs.
func TestClient_refusesWithoutHome(t *testing.T) {
	t.Setenv("HOME", "")
	t.Setenv("TART_HOME", "")
	f := &fakeRunner{handler: func([]string) fakeResult { return fakeResult{} }}
	c := NewClient(withRunner(f))
	must.ErrorIs(t, c.CheckHome(), ErrNoHome)
	must.Eq(t, "", c.Home())
	_, err := c.List(context.Background())
	must.ErrorIs(t, err, ErrNoHome)
	must.ErrorContains(t, err, "set TART_HOME")
	_, err = c.Exec(context.Background(), "vm", []string{"true"}, ExecOptions{})
	must.ErrorIs(t, err, ErrNoHome)
	_, err = c.Run(context.Background(), "vm", RunOptions{})
	must.ErrorIs(t, err, ErrNoHome)
	must.SliceEmpty(t, f.calls, must.Sprint("no tart command ran"))

	t.Setenv("HOME", "/home/someone")
	must.Eq(t, "/home/someone/.tart", c.Home())
	must.Eq(t, "/elsewhere", NewClient(WithHome("/elsewhere")).Home())
}
