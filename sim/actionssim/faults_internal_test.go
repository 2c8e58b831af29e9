// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"testing"
	"time"

	"github.com/shoenig/test/must"
)

func Test_faultSet_take(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	cases := []struct {
		name  string
		fault Fault
		at    []time.Duration // offsets of requests from injection
		ep    Endpoint
		want  []bool
	}{
		{name: "count", fault: Fault{Status: 500, Count: 2}, ep: EndpointSessions,
			at: []time.Duration{0, 0, 0}, want: []bool{true, true, false}},
		{name: "for", fault: Fault{Status: 500, For: time.Second}, ep: EndpointSessions,
			at: []time.Duration{0, 999 * time.Millisecond, 2 * time.Second}, want: []bool{true, true, false}},
		{name: "endpoint filter", fault: Fault{Status: 500, Endpoints: []Endpoint{EndpointRunners}}, ep: EndpointSessions,
			at: []time.Duration{0}, want: []bool{false}},
		{name: "unlimited", fault: Fault{Status: 500}, ep: EndpointGetMessage,
			at: []time.Duration{0, time.Hour}, want: []bool{true, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var fs faultSet
			af := &activeFault{Fault: tc.fault, remaining: -1}
			if tc.fault.Count > 0 {
				af.remaining = tc.fault.Count
			}
			if tc.fault.For > 0 {
				af.until = now.Add(tc.fault.For)
			}
			fs.faults = []*activeFault{af}
			for i, off := range tc.at {
				_, ok := fs.take(tc.ep, now.Add(off))
				must.Eq(t, tc.want[i], ok, must.Sprintf("request %d", i))
			}
		})
	}
}

func Test_scopeFromConfigURL(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want, err string }{
		{in: "http://h/acme", want: "orgs/acme"},
		{in: "http://h/acme/", want: "orgs/acme"},
		{in: "http://h/acme/app", want: "repos/acme/app"},
		{in: "http://h/Enterprises/big", want: "enterprises/big"},
		{in: "http://h/", err: "no org"},
		{in: "http://h/a/b/c", err: "not an enterprise"},
	}
	for _, tc := range cases {
		got, err := scopeFromConfigURL(tc.in)
		if tc.err != "" {
			must.ErrorContains(t, err, tc.err)
			continue
		}
		must.NoError(t, err)
		must.Eq(t, tc.want, got)
	}
}

func Test_tokens_roundTripAndExpiry(t *testing.T) {
	t.Parallel()
	key := []byte("k")
	now := time.Unix(5000, 0)
	tok, err := signHS256(key, simClaims{Kind: "admin", IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Minute).Unix(), Serial: 7})
	must.NoError(t, err)
	c, err := verifyHS256(key, tok, now)
	must.NoError(t, err)
	must.Eq(t, int64(7), c.Serial)
	_, err = verifyHS256(key, tok, now.Add(time.Minute))
	must.ErrorIs(t, err, errTokenExpired)
	_, err = verifyHS256([]byte("other"), tok, now)
	must.ErrorIs(t, err, errTokenSignature)
	_, err = verifyHS256(key, "a.b", now)
	must.ErrorIs(t, err, errTokenMalformed)
}

func TestOptions_Validate(t *testing.T) {
	t.Parallel()
	var o Options
	must.NoError(t, o.Validate())
	must.Eq(t, 50*time.Second, o.LongPollTimeout)
	must.Eq(t, 3, o.MaxAssignAttempts)
	bad := Options{AssignTimeout: -1, MessageBatchSize: -1, Apps: []App{{}}, RunnerGroups: []string{"default"}}
	err := bad.Validate()
	for _, field := range []string{"AssignTimeout", "MessageBatchSize", "Apps[0].ClientID", "Apps[0].InstallationID", "Apps[0].PublicKey", "RunnerGroups[0]"} {
		must.ErrorContains(t, err, field)
	}
}
