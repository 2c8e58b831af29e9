// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package tart

import (
	"context"
	"fmt"
	"time"
)

// Suspend runs `tart suspend <name>` (macOS 14+ hosts) and waits until the
// VM lists as suspended: tart only signals the VM's tart run and returns
// before the snapshot exists. run, when set, is the VM's
// tart run: its exit ends the wait early, and the state is checked once
// more then. A VM not started with --suspendable is killed by tart instead
// (the VM ends up stopped and Suspend fails). ErrNotRunning when the VM is
// not running.
func (c *Client) Suspend(ctx context.Context, name string, run *RunHandle) error {
	if _, err := c.exec(ctx, "suspend", name, "suspend", name); err != nil {
		return err
	}
	var done <-chan struct{}
	if run != nil {
		done = run.Done()
	}
	for {
		d, err := c.Get(ctx, name)
		switch {
		case err != nil:
			return fmt.Errorf("suspend vm %s: %w", name, err)
		case d.State == StateSuspended:
			return nil
		case d.State == StateStopped && run != nil:
			// tart run exited without a snapshot: it could not suspend.
			select {
			case <-done:
				return fmt.Errorf("suspend vm %s: it stopped without a snapshot: %w", name, run.exitError())
			default:
			}
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("suspend vm %s: wait for the snapshot: %w", name, ctx.Err())
		case <-done:
			t.Stop()
			done = nil // check the state once more, then poll
		case <-t.C:
		}
	}
}
