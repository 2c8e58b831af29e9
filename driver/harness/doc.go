// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

// Package harness plays a Nomad client agent against a task-driver plugin,
// so that driver tests exercise the real wire protocol without Nomad.
//
// Launch starts a built plugin binary exactly as Nomad's client does
// (go-plugin, Nomad's handshake, gRPC only, the agent's environment, the
// plugin's stderr hclog lines copied to the test log); InProcess serves a
// driver value over real gRPC inside the test process. Both then run the
// long-lived instance's start sequence: PluginInfo, ConfigSchema, the test's
// plugin config HCL encoded with that schema, SetConfig with nomad_config,
// Init, and the Fingerprint and TaskEvents streams, read in the background.
//
// StartTask builds what the client builds before StartTask: an allocation
// directory with Nomad's layout, stdout/stderr FIFOs with a collector
// reading them (like logmon), the NOMAD_* environment, resources, and the
// task config HCL validated and encoded with the task schema fetched over
// gRPC (a config that does not decode fails like "Failed Validation",
// without calling the driver). Typed helpers cover every task RPC, and
// KillPlugin, StopPlugin, Relaunch and RecoverTask replay plugin crashes and
// agent restarts, including the handle without msgpack_driver_config that a
// restarted client sends. Replies that would crash or confuse a real client
// (missing WaitTask result, handle with another ID, streams that end, ...)
// fail the test as "driver contract" errors.
//
// Everything is released by t.Cleanup: tasks still alive are destroyed
// (relaunching the plugin if the test killed it), the plugin is stopped and
// directories are removed. A typical test:
//
//	func TestDriver_StartTask_runsCommand(t *testing.T) {
//		h := harness.Launch(t, testutil.BuildBinary(t, "./cmd/mydriver"), harness.Options{
//			PluginConfig: `pool_size = 1`,
//		})
//		h.WaitFingerprint(t, func(fp *harness.Fingerprint) bool { return fp.Healthy })
//		task := h.StartTask(t, harness.TaskSpec{Config: `image = "base"`})
//		h.WaitStdout(t, task.ID, "ready")
//		h.StopTask(t, task.ID, 5*time.Second, "")
//		must.Eq(t, 0, h.WaitTask(t, task.ID).ExitCode)
//		h.DestroyTask(t, task.ID, true)
//	}
//
// The harness keeps its own copy of the wire constants (handshake, API
// version) taken from the protocol reference rather than from driver/sdk,
// so that a mistake in the SDK fails instead of agreeing with itself. It
// must not import github.com/hashicorp/nomad.
package harness
