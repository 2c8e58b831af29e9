// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

// WithTartPath sets the plugin config's tart_path directly, for tests that
// cannot send msgpack config yet.
func (d *Driver) WithTartPath(p string) *Driver {
	c := d.pluginConfig()
	c.TartPath = p
	d.config = &c
	return d
}
