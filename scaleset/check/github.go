// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package check

import (
	"context"
	"strings"

	"github.com/actions/scaleset"

	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
)

// GitHub is what check asks GitHub; *scaleset.Client implements it.
type GitHub interface {
	GetRunnerGroupByName(ctx context.Context, name string) (*scaleset.RunnerGroup, error)
	GetRunnerScaleSet(ctx context.Context, runnerGroupID int, name string) (*scaleset.RunnerScaleSet, error)
}

// checkGitHub authenticates with the scale set's credentials and resolves
// its runner group and scale set the way the service does (the default
// group is id 1 without a lookup).
func checkGitHub(ctx context.Context, r *Report, cfg *config.Config, ss *config.ScaleSet, o Options) {
	gh, err := o.Probes.GitHub(cfg, ss)
	if err != nil {
		r.add(ss.Name, "github", Fail, "cannot build a client for %s: %v", ss.GitHubConfigURL, err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	groupID := 1
	if ss.RunnerGroup != scaleset.DefaultRunnerGroup {
		g, err := gh.GetRunnerGroupByName(pctx, ss.RunnerGroup)
		if err != nil {
			r.add(ss.Name, "github", Fail, "%s", githubProblem(err, "look up runner_group "+quote(ss.RunnerGroup)))
			return
		}
		groupID = g.ID
	}
	rs, err := gh.GetRunnerScaleSet(pctx, groupID, ss.RunnerScaleSetName)
	if err != nil {
		r.add(ss.Name, "github", Fail, "%s", githubProblem(err, "look up scale set "+quote(ss.RunnerScaleSetName)))
		return
	}
	r.add(ss.Name, "github", OK, "authenticated to %s", ss.GitHubConfigURL)
	r.add(ss.Name, "runner group", OK, "%s (id %d)", quote(ss.RunnerGroup), groupID)
	if rs == nil {
		r.add(ss.Name, "scale set", Warn, "%s does not exist yet in runner group %s: run creates it", quote(ss.RunnerScaleSetName), quote(ss.RunnerGroup))
		return
	}
	r.add(ss.Name, "scale set", OK, "%s exists (id %d, %d label(s))", quote(rs.Name), rs.ID, len(rs.Labels))
}

// githubProblem says whether a failure is the credentials' or something
// else's; the error text never carries a token (the client redacts).
func githubProblem(err error, doing string) string {
	msg := err.Error()
	low := strings.ToLower(msg)
	if strings.Contains(low, "no runner group found") {
		return "runner_group does not exist: " + msg
	}
	// Status codes as the client prints them (status="401 ..."), never a
	// bare number: request and activity IDs are full of digits.
	for _, s := range []string{`status="401`, `status="403`, "unauthorized", "forbidden", "bad credentials", "registration token", "access token", "jwt"} {
		if strings.Contains(low, s) {
			return "authentication failed (check github_app or the token and its scopes): " + msg
		}
	}
	return "failed to " + doing + ": " + msg
}

func quote(s string) string { return `"` + s + `"` }
