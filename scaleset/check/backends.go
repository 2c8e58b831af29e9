// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package check

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/hashicorp/nomad/api"

	"github.com/tartnomad/nomad-driver-tart/dockerexec"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/dockerbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/nomadbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/backend/tartbackend"
	"github.com/tartnomad/nomad-driver-tart/scaleset/config"
	"github.com/tartnomad/nomad-driver-tart/scaleset/service"
)

// Docker is what check asks the Docker engine.
type Docker interface {
	// Ping returns the engine's API version.
	Ping(ctx context.Context) (string, error)
	// HasImage reports whether ref is in the engine's image store.
	HasImage(ctx context.Context, ref string) (bool, error)
	Close() error
}

// Nomad is what check asks Nomad.
type Nomad interface {
	// Address and Namespace are the ones in use (after Nomad's
	// environment variables and defaults).
	Address() string
	Namespace() string
	// Reachable returns nil when the agent answers HTTP at all.
	Reachable(ctx context.Context) error
	// Token describes the token in use.
	Token(ctx context.Context) (Token, error)
	// CheckJob reads and validates the parameterized job as the nomad
	// backend does at startup (ErrJobInvalid names what to fix).
	CheckJob(ctx context.Context) error
	Close()
}

// Token is the Nomad ACL token as check reports it.
type Token struct {
	// ACLDisabled: the cluster has no ACLs; every request is allowed.
	ACLDisabled bool
	// Unsupported: the agent does not answer /v1/acl/token/self.
	Unsupported bool
	Name, Type  string
	Policies    []string
}

// Tart is what check asks tart; *tart.Client implements it.
type Tart interface {
	Version(ctx context.Context) (string, error)
	HasImage(ctx context.Context, image string) (bool, error)
}

func checkBackend(ctx context.Context, r *Report, ss *config.ScaleSet, o Options) {
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// Run validated the block (service.ValidateBackends).
	bc, err := service.DecodeBackend(ss)
	if err != nil {
		r.add(ss.Name, ss.Backend, Fail, "%v", err)
		return
	}
	switch {
	case bc.Docker != nil:
		checkDocker(pctx, r, ss.Name, bc.Docker, o)
	case bc.Nomad != nil:
		checkNomad(pctx, r, ss.Name, ss.RunnerScaleSetName, bc.Nomad, o)
	case bc.Tart != nil:
		checkTart(pctx, r, ss.Name, bc.Tart, o)
	}
}

func checkDocker(ctx context.Context, r *Report, name string, c *dockerbackend.Config, o Options) {
	d, err := o.Probes.Docker(c)
	if err != nil {
		r.add(name, "docker", Fail, "cannot build a Docker client: %v", err)
		return
	}
	defer d.Close()
	v, err := d.Ping(ctx)
	if err != nil {
		r.add(name, "docker", Fail, "engine not reachable (DOCKER_HOST or docker_host; is the user in the docker group?): %v", err)
		return
	}
	r.add(name, "docker", OK, "engine reachable (API %s)", v)
	ref := c.Image
	if ref == "" {
		ref = dockerexec.DefaultImage
	}
	ok, err := d.HasImage(ctx, ref)
	switch {
	case err != nil:
		r.add(name, "docker image", Fail, "failed to inspect %s: %v", ref, err)
	case ok:
		r.add(name, "docker image", OK, "%s present", ref)
	case c.PullPolicy == string(dockerexec.PullNever):
		r.add(name, "docker image", Fail, "%s is not present and pull_policy is never: load it (docker load/pull)", ref)
	default:
		r.add(name, "docker image", Warn, "%s is not present: the first runner start pulls it", ref)
	}
}

func checkNomad(ctx context.Context, r *Report, name, scaleSetName string, c *nomadbackend.Config, o Options) {
	n, err := o.Probes.Nomad(c, scaleSetName)
	if err != nil {
		r.add(name, "nomad", Fail, "cannot build a Nomad client: %v", err)
		return
	}
	defer n.Close()
	if err := n.Reachable(ctx); err != nil {
		r.add(name, "nomad", Fail, "agent at %s not reachable (address or NOMAD_ADDR): %v", n.Address(), err)
		return
	}
	r.add(name, "nomad", OK, "agent at %s reachable", n.Address())
	tok, err := n.Token(ctx)
	switch {
	case err != nil:
		r.add(name, "nomad token", Fail, "%v", err)
		return
	case tok.ACLDisabled:
		r.add(name, "nomad token", OK, "ACLs are disabled: every request is allowed")
	case tok.Unsupported:
		r.add(name, "nomad token", Skip, "the agent does not answer /v1/acl/token/self; rights are checked by reading the job below")
	default:
		r.add(name, "nomad token", OK, "%s token %q, policies %s (dispatch rights are used, not probed: check that they include dispatch-job)",
			tok.Type, tok.Name, strings.Join(tok.Policies, ", "))
	}
	if err := n.CheckJob(ctx); err != nil {
		r.add(name, "nomad job", Fail, "%v", err)
		return
	}
	r.add(name, "nomad job", OK, "parameterized job %q in namespace %q accepts the service's dispatches", c.JobID, n.Namespace())
}

func checkTart(ctx context.Context, r *Report, name string, c *tartbackend.Config, o Options) {
	t, err := o.Probes.Tart(c)
	if err != nil {
		r.add(name, "tart", Fail, "%v", err)
		return
	}
	v, err := t.Version(ctx)
	if err != nil {
		r.add(name, "tart", Fail, "%s does not run (tart_path; install with brew install cirruslabs/cli/tart): %v", c.TartPath, err)
		return
	}
	r.add(name, "tart", OK, "%s version %s", c.TartPath, v)
	ok, err := t.HasImage(ctx, c.Image)
	switch {
	case err != nil:
		r.add(name, "tart image", Fail, "failed to list tart's images: %v", err)
	case ok:
		r.add(name, "tart image", OK, "%s cached", c.Image)
	default:
		r.add(name, "tart image", Warn, "%s is not cached: the first VM pulls it (tens of GB for macOS; run tart pull %s now)", c.Image, c.Image)
	}
}

// nomadProbe is the default Nomad: an API client for reachability and the
// token, and the nomad backend itself for the job check.
type nomadProbe struct {
	client   *api.Client
	addr, ns string
	cfg      nomadbackend.Config
	scaleSet string
}

func (p *nomadProbe) Address() string { return p.addr }

func (p *nomadProbe) Namespace() string { return p.ns }

func (p *nomadProbe) Reachable(ctx context.Context) error {
	var leader string
	_, err := p.client.Raw().Query("/v1/status/leader", &leader, (&api.QueryOptions{}).WithContext(ctx))
	var ue api.UnexpectedResponseError
	if err != nil && errors.As(err, &ue) && ue.HasStatusCode() {
		return nil // an HTTP answer: reachable
	}
	return err
}

func (p *nomadProbe) Token(ctx context.Context) (Token, error) {
	tok, _, err := p.client.ACLTokens().Self((&api.QueryOptions{}).WithContext(ctx))
	if err == nil {
		return Token{Name: tok.Name, Type: tok.Type, Policies: tok.Policies}, nil
	}
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) && ue.HasStatusCode() {
		switch code := ue.StatusCode(); {
		case strings.Contains(err.Error(), "ACL support disabled"):
			return Token{ACLDisabled: true}, nil
		case code == http.StatusForbidden || code == http.StatusUnauthorized || strings.Contains(strings.ToLower(err.Error()), "token not found"):
			// Nomad answers an unknown secret with 404 "ACL token not found".
			return Token{}, fmt.Errorf("token rejected (%d): set token_file or NOMAD_TOKEN to a token with the scale set's policy", code)
		case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
			return Token{Unsupported: true}, nil
		}
	}
	return Token{}, fmt.Errorf("failed to read the token: %w", err)
}

func (p *nomadProbe) CheckJob(ctx context.Context) error {
	// The backend's own startup: the same job validation the service
	// runs. Its watcher stops again at once; it dispatches nothing.
	be, err := nomadbackend.New(ctx, p.cfg, p.scaleSet, nil)
	if err != nil {
		return err
	}
	be.Shutdown(ctx)
	return nil
}

func (p *nomadProbe) Close() { p.client.Close() }

func newNomadProbe(c *nomadbackend.Config, scaleSet string) (Nomad, error) {
	ac, err := c.APIConfig(os.Getenv)
	if err != nil {
		return nil, err
	}
	cl, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("nomad client for %s: %w", ac.Address, err)
	}
	return &nomadProbe{client: cl, addr: ac.Address, ns: ac.Namespace, cfg: *c, scaleSet: scaleSet}, nil
}
