// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package cliflags

import (
	"bytes"
	"flag"
	"testing"

	"github.com/shoenig/test/must"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name             string
		args             []string
		code             int
		ok               bool
		wantOut, wantErr string
	}{
		{"flags", []string{"--n", "3"}, 0, true, "", ""},
		{"--help", []string{"--help"}, 0, false, "-n int", ""},
		{"-h", []string{"-h"}, 0, false, "a number", ""},
		{"bad value", []string{"--n", "x"}, ExitUsage, false, "", `invalid value "x" for flag -n`},
		{"unknown flag", []string{"--m"}, ExitUsage, false, "", "flag provided but not defined: -m"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			n := fs.Int("n", 0, "a number")
			var out, errb bytes.Buffer
			code, ok := Parse(fs, tc.args, &out, &errb)
			must.Eq(t, tc.code, code)
			must.Eq(t, tc.ok, ok)
			if tc.ok {
				must.Eq(t, 3, *n)
			}
			must.StrContains(t, out.String(), tc.wantOut)
			must.StrContains(t, errb.String(), tc.wantErr)
			if tc.wantOut != "" {
				must.Eq(t, "", errb.String())
			}
			if tc.wantErr != "" {
				must.Eq(t, "", out.String())
			}
		})
	}
}
