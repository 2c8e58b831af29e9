// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package plugincli

import (
	"bytes"
	"testing"

	"github.com/shoenig/test/must"
)

func TestHelp(t *testing.T) {
	cases := []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--help"}, true},
		{[]string{"-h"}, true},
		{[]string{"-help"}, true},
		{[]string{"help"}, true},
		{[]string{"--version"}, false},
		{[]string{"supervise", "--help"}, false},
	}
	for _, tc := range cases {
		var b bytes.Buffer
		must.Eq(t, tc.want, Help(tc.args, &b, "Usage: x\n"), must.Sprintf("%q", tc.args))
		if tc.want {
			must.Eq(t, "Usage: x\n", b.String())
		} else {
			must.Eq(t, "", b.String())
		}
	}
}
