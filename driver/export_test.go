// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package driver

import "time"

// WithTartPath sets the plugin config's tart_path directly, for tests that
// cannot send msgpack config yet.
func (d *Driver) WithTartPath(p string) *Driver {
	c := d.pluginConfig()
	c.TartPath = p
	d.config = &c
	return d
}

// WithFingerprintPeriods sets how often the fingerprint asks tart for its
// version (fingerprintPeriod) and compares the attributes without a pool
// event (attrPeriod).
func (d *Driver) WithFingerprintPeriods(version, attrs time.Duration) *Driver {
	d.versionEvery, d.attrEvery = version, attrs
	return d
}
