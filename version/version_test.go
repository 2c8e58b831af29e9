// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package version

import "testing"

func TestString(t *testing.T) {
	cases := []struct {
		name, version, pre, commit, binary string
		want, wantFull                     string
	}{
		{name: "dev", version: "1.2.3", pre: "dev", binary: "x", want: "1.2.3-dev", wantFull: "x v1.2.3-dev"},
		{name: "release", version: "1.2.3", pre: "", commit: "abc", binary: "y", want: "1.2.3", wantFull: "y v1.2.3 (abc)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			oldV, oldP, oldC := Version, VersionPrerelease, GitCommit
			t.Cleanup(func() { Version, VersionPrerelease, GitCommit = oldV, oldP, oldC })
			Version, VersionPrerelease, GitCommit = tc.version, tc.pre, tc.commit
			if got := String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
			if got := Full(tc.binary); got != tc.wantFull {
				t.Fatalf("Full() = %q, want %q", got, tc.wantFull)
			}
		})
	}
}
