// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// This file is the simulated GitHub REST API (reference 1.4): App
// installation tokens, registration tokens and runner registration, which
// hands out the Actions service URL and an expiring admin JWT.

const ghRegistrationSuffix = "/actions/runners/registration-token"

// scopeFromConfigURL parses a GitHub config URL the way the official client
// does (reference 1.1) and returns "orgs/o", "repos/o/r" or "enterprises/e".
func scopeFromConfigURL(raw string) (string, error) {
	u, err := url.Parse(strings.Trim(raw, "/"))
	if err != nil {
		return "", fmt.Errorf("parsing config url %q: %w", raw, err)
	}
	path := strings.Trim(u.Path, "/")
	parts := strings.Split(path, "/")
	switch {
	case path == "":
		return "", fmt.Errorf("config url %q has no org, repository or enterprise", raw)
	case len(parts) == 1:
		return "orgs/" + parts[0], nil
	case len(parts) == 2 && strings.EqualFold(parts[0], "enterprises"):
		return "enterprises/" + parts[1], nil
	case len(parts) == 2:
		return "repos/" + parts[0] + "/" + parts[1], nil
	default:
		return "", fmt.Errorf("config url %q is not an enterprise, org, or repository url", raw)
	}
}

// githubAuthorized reports whether a REST bearer token is a valid PAT or
// installation token. Callers hold s.mu.
func (s *Simulator) githubAuthorizedLocked(token string, now time.Time) bool {
	if token == "" {
		return false
	}
	if exp, ok := s.installToks[token]; ok {
		return now.Before(exp)
	}
	if len(s.opts.PersonalAccessTokens) == 0 {
		return true
	}
	for _, p := range s.opts.PersonalAccessTokens {
		if secretEqual(p, token) {
			return true
		}
	}
	return false
}

func (s *Simulator) handleAccessToken(w http.ResponseWriter, r *http.Request) {
	installID, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		s.writeGitHubError(w, http.StatusNotFound, "Not Found")
		return
	}
	jwt, ok := bearer(r, "Bearer")
	if !ok {
		s.writeGitHubError(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	now := time.Now()
	var matched *App
	verifyErr := errTokenMalformed
	for i := range s.opts.Apps {
		app := &s.opts.Apps[i]
		iss, err := verifyAppJWT(app.PublicKey, jwt, now)
		if err != nil {
			if !errors.Is(err, errTokenSignature) {
				verifyErr = err
			}
			continue
		}
		if iss == app.ClientID {
			matched = app
			break
		}
	}
	if matched == nil {
		msg := "A JSON web token could not be decoded"
		if errors.Is(verifyErr, errTokenExpired) {
			msg = "'Expiration time' claim ('exp') is too far in the future or has passed"
		}
		s.writeGitHubError(w, http.StatusUnauthorized, msg)
		return
	}
	if matched.InstallationID != installID {
		s.writeGitHubError(w, http.StatusNotFound, "Not Found")
		return
	}
	tok := randomToken("ghs_", 18)
	exp := now.Add(s.opts.InstallationTokenLifetime).UTC()
	s.mu.Lock()
	s.installToks[tok] = exp
	s.mu.Unlock()
	s.log.Info("issued installation token", "installation_id", installID)
	s.writeGitHubJSON(w, http.StatusCreated, map[string]any{
		"token":                tok,
		"expires_at":           exp.Format(time.RFC3339),
		"permissions":          map[string]string{"organization_self_hosted_runners": "write", "metadata": "read"},
		"repository_selection": "all",
	})
}

func (s *Simulator) handleRegistrationToken(w http.ResponseWriter, r *http.Request) {
	scope := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v3/"), ghRegistrationSuffix)
	tok, _ := bearer(r, "Bearer")
	now := time.Now()
	s.mu.Lock()
	if !s.githubAuthorizedLocked(tok, now) {
		s.mu.Unlock()
		s.writeGitHubError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	reg := randomToken("AREG", 14)
	exp := now.Add(s.opts.RegistrationTokenLifetime).UTC()
	s.regTokens[strings.ToUpper(reg)] = regToken{scope: scope, expires: exp}
	s.mu.Unlock()
	s.log.Info("issued registration token", "scope", scope)
	s.writeGitHubJSON(w, http.StatusCreated, map[string]string{
		"token": strings.ToUpper(reg), "expires_at": exp.Format(time.RFC3339),
	})
}

func (s *Simulator) handleRunnerRegistration(w http.ResponseWriter, r *http.Request) {
	reg, ok := bearer(r, "RemoteAuth")
	if !ok {
		s.writeGitHubError(w, http.StatusUnauthorized, "Requires authentication")
		return
	}
	var body struct {
		URL         string `json:"url"`
		RunnerEvent string `json:"runner_event"`
	}
	if err := decodeJSON(r, &body); err != nil {
		s.writeGitHubError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	scope, err := scopeFromConfigURL(body.URL)
	if err != nil {
		s.writeGitHubError(w, http.StatusNotFound, "Not Found")
		return
	}
	now := time.Now()
	s.mu.Lock()
	rt, ok := s.regTokens[reg]
	if !ok || !now.Before(rt.expires) {
		s.mu.Unlock()
		s.writeGitHubError(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if rt.scope != scope {
		s.mu.Unlock()
		s.writeGitHubError(w, http.StatusNotFound, "Not Found")
		return
	}
	t := s.tenantLocked(scope)
	tok, err := s.issueTokenLocked("admin", t.id, "", s.opts.AdminTokenLifetime, now)
	s.mu.Unlock()
	if err != nil {
		s.writeGitHubError(w, http.StatusInternalServerError, "failed to issue token")
		return
	}
	s.log.Info("registered admin connection", "scope", scope)
	s.writeGitHubJSON(w, http.StatusCreated, map[string]string{
		"url":          fmt.Sprintf("%s/_services/%d/", baseURL(r), t.id),
		"token":        tok,
		"token_schema": "OAuthAccessToken",
	})
}

// tenantLocked returns the tenant for scope, creating it. Callers hold s.mu.
func (s *Simulator) tenantLocked(scope string) *tenant {
	if t, ok := s.tenants[scope]; ok {
		return t
	}
	s.nextTenant++
	t := &tenant{id: s.nextTenant, scope: scope}
	s.tenants[scope] = t
	return t
}

func (s *Simulator) tenantByIDLocked(id int) *tenant {
	for _, t := range s.tenants {
		if t.id == id {
			return t
		}
	}
	return nil
}

// issueTokenLocked signs an admin or message-queue JWT. Callers hold s.mu.
func (s *Simulator) issueTokenLocked(kind string, tenantID int, sessionID string, life time.Duration, now time.Time) (string, error) {
	s.nextSerial++
	return signHS256(s.key, simClaims{
		Issuer: "actionssim", Audience: "actions", Subject: kind,
		IssuedAt: now.Unix(), NotBefore: now.Unix(), ExpiresAt: now.Add(life).Unix(),
		Kind: kind, Tenant: tenantID, Session: sessionID, Serial: s.nextSerial,
	})
}

// checkToken verifies a simulator JWT of the given kind; revokedSerial is
// the forced-expiry watermark. Callers hold s.mu.
func (s *Simulator) checkTokenLocked(tok, kind string, revokedSerial int64, now time.Time) (simClaims, error) {
	c, err := verifyHS256(s.key, tok, now)
	if err != nil {
		return c, err
	}
	if c.Kind != kind {
		return c, errTokenSignature
	}
	if c.Serial <= revokedSerial {
		return c, errTokenExpired
	}
	return c, nil
}

// ExpireAdminTokens makes every admin token issued so far invalid (401),
// as if they had all expired. The official client does not refresh on 401,
// so its next admin call fails until its own expiry timer runs out: use
// this to test error handling, and a short AdminTokenLifetime to test
// refresh.
func (s *Simulator) ExpireAdminTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.adminRevoked = s.nextSerial
}

// ExpireMessageQueueTokens makes every message-queue token issued so far
// invalid. The next GET/DELETE message or acquirejobs answers 401 and the
// official client refreshes its session once.
func (s *Simulator) ExpireMessageQueueTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mqRevoked = s.nextSerial
}
