// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/actions/scaleset"
	"github.com/shoenig/test/must"

	"github.com/tartnomad/nomad-driver-tart/sim/actionssim"
)

func rsaKeyPEM(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	must.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	must.NoError(t, err)
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func TestSimulator_AppAuth(t *testing.T) {
	t.Parallel()
	key, keyPEM := rsaKeyPEM(t)
	other, otherPEM := rsaKeyPEM(t)
	_ = other
	opts := fastOptions()
	opts.Apps = []actionssim.App{{ClientID: "Iv1.simapp", InstallationID: 42, PublicKey: &key.PublicKey}}
	srv := startSim(t, opts)

	cases := []struct {
		name      string
		clientID  string
		install   int64
		keyPEM    string
		configURL string
		wantErr   string
	}{
		{name: "org", clientID: "Iv1.simapp", install: 42, keyPEM: keyPEM, configURL: srv.OrgConfigURL("acme")},
		{name: "repo", clientID: "Iv1.simapp", install: 42, keyPEM: keyPEM, configURL: srv.RepoConfigURL("acme", "app")},
		{name: "wrong key", clientID: "Iv1.simapp", install: 42, keyPEM: otherPEM, configURL: srv.OrgConfigURL("acme"),
			wantErr: "401"},
		{name: "wrong client id", clientID: "Iv1.other", install: 42, keyPEM: keyPEM, configURL: srv.OrgConfigURL("acme"),
			wantErr: "401"},
		{name: "wrong installation", clientID: "Iv1.simapp", install: 7, keyPEM: keyPEM, configURL: srv.OrgConfigURL("acme"),
			wantErr: "404"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := scaleset.NewClientWithGitHubApp(scaleset.ClientWithGitHubAppConfig{
				GitHubConfigURL: tc.configURL,
				GitHubAppAuth:   scaleset.GitHubAppAuth{ClientID: tc.clientID, InstallationID: tc.install, PrivateKey: tc.keyPEM},
			}, fastRetry...)
			must.NoError(t, err)
			g, err := c.GetRunnerGroupByName(t.Context(), "default")
			if tc.wantErr != "" {
				must.ErrorContains(t, err, tc.wantErr)
				must.ErrorContains(t, err, "access token for GitHub App auth")
				return
			}
			must.NoError(t, err)
			must.Eq(t, 1, g.ID)
		})
	}
	must.Eq(t, 5, srv.RequestCount(actionssim.EndpointAccessToken))
}

func TestSimulator_PAT_rejected(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c, err := scaleset.NewClientWithPersonalAccessToken(scaleset.NewClientWithPersonalAccessTokenConfig{
		GitHubConfigURL: srv.EnterpriseConfigURL("big"), PersonalAccessToken: "ghp_wrong",
	}, fastRetry...)
	must.NoError(t, err)
	_, err = c.GetRunnerScaleSet(t.Context(), 1, "x")
	must.ErrorContains(t, err, "401")
	must.ErrorContains(t, err, "failed to get runner registration token")
	must.Eq(t, 1, srv.RequestCount(actionssim.EndpointRegistrationToken)) // 401 is not retried
	must.Eq(t, 0, srv.RequestCount(actionssim.EndpointRunnerRegistration))
}

func TestSimulator_AdminToken_refreshBeforeExpiry(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		lifetime  time.Duration
		wantRegs  int
		callCount int
	}{
		// The client refreshes when less than 60 s are left.
		{name: "short lifetime refreshes every call", lifetime: 30 * time.Second, callCount: 3, wantRegs: 3},
		{name: "long lifetime refreshes once", lifetime: time.Hour, callCount: 3, wantRegs: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := fastOptions()
			opts.AdminTokenLifetime = tc.lifetime
			srv := startSim(t, opts)
			c := patClient(t, srv)
			for range tc.callCount {
				_, err := c.GetRunnerGroupByName(t.Context(), "default")
				must.NoError(t, err)
			}
			must.Eq(t, tc.wantRegs, srv.RequestCount(actionssim.EndpointRunnerRegistration))
			must.Eq(t, tc.wantRegs, srv.RequestCount(actionssim.EndpointRegistrationToken))
		})
	}
}

func TestSimulator_AdminToken_forcedExpiry(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	_, err := c.GetRunnerGroupByName(t.Context(), "default")
	must.NoError(t, err)
	srv.ExpireAdminTokens()
	// The client has no reactive refresh: the 401 is its error.
	_, err = c.GetRunnerGroupByName(t.Context(), "default")
	must.ErrorContains(t, err, "401")
	must.ErrorContains(t, err, "VssUnauthorizedException")
	must.ErrorContains(t, err, "expired")
}

func TestSimulator_MessageQueueToken_refreshOn401(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "mq")
	sc := sessionClient(t, c, ss.ID)
	oldToken := sc.Session().MessageQueueAccessToken
	srv.QueueJob(actionssim.JobSpec{})
	before := srv.RequestCount(actionssim.EndpointSessions)

	srv.ExpireMessageQueueTokens()
	msg, err := sc.GetMessage(t.Context(), 0, 5)
	must.NoError(t, err)
	must.NotNil(t, msg)
	must.Eq(t, before+1, srv.RequestCount(actionssim.EndpointSessions)) // one PATCH refresh
	must.NotEq(t, oldToken, sc.Session().MessageQueueAccessToken)

	srv.ExpireMessageQueueTokens()
	must.NoError(t, sc.DeleteMessage(t.Context(), msg.MessageID))
	must.Eq(t, before+2, srv.RequestCount(actionssim.EndpointSessions))
}

func TestSimulator_DropSession_refreshFails404(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "drop")
	sc, err := c.MessageSessionClient(t.Context(), ss.ID, "o")
	must.NoError(t, err)
	must.True(t, srv.DropSession(ss.ID))
	_, err = sc.GetMessage(t.Context(), 0, 1)
	must.ErrorContains(t, err, "failed to refresh message session")
	must.ErrorContains(t, err, "404")
	must.ErrorContains(t, err, "RunnerAdminException")
	err = sc.Close(t.Context())
	must.ErrorContains(t, err, "404")
	// A new session can be created at once.
	sessionClient(t, c, ss.ID)
}

func TestSimulator_Faults_5xxRetried(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "faulty")

	before := srv.RequestCount(actionssim.EndpointScaleSets)
	srv.FailNext(3, http.StatusInternalServerError, actionssim.EndpointScaleSets)
	got, err := c.GetRunnerScaleSetByID(t.Context(), ss.ID)
	must.NoError(t, err)
	must.Eq(t, "faulty", got.Name)
	must.Eq(t, before+4, srv.RequestCount(actionssim.EndpointScaleSets))

	// More failures than the client's 5 attempts.
	before = srv.RequestCount(actionssim.EndpointScaleSets)
	srv.FailNext(5, http.StatusBadGateway, actionssim.EndpointScaleSets)
	_, err = c.GetRunnerScaleSetByID(t.Context(), ss.ID)
	must.ErrorContains(t, err, "giving up after 5 attempt(s)")
	must.Eq(t, before+5, srv.RequestCount(actionssim.EndpointScaleSets))

	// Faults on bootstrap endpoints are retried too (new client).
	srv.FailNext(2, http.StatusServiceUnavailable, actionssim.EndpointRunnerRegistration)
	c2 := patClient(t, srv)
	_, err = c2.GetRunnerScaleSetByID(t.Context(), ss.ID)
	must.NoError(t, err)

	// 501 is not retried; a text/plain body is used verbatim.
	sc := sessionClient(t, c, ss.ID)
	srv.InjectFault(actionssim.Fault{Endpoints: []actionssim.Endpoint{actionssim.EndpointGetMessage},
		Status: http.StatusNotImplemented, Count: 1, PlainText: true})
	_, err = sc.GetMessage(t.Context(), 0, 1)
	must.ErrorContains(t, err, "501")
	must.ErrorContains(t, err, "injected fault: status 501")

	// A time-bounded outage outlasts the client's retries until cleared.
	before = srv.RequestCount(actionssim.EndpointGetMessage)
	srv.FailFor(time.Hour, http.StatusInternalServerError, actionssim.EndpointGetMessage)
	_, err = sc.GetMessage(t.Context(), 0, 1)
	must.ErrorContains(t, err, "giving up after 5 attempt(s)")
	must.Eq(t, before+5, srv.RequestCount(actionssim.EndpointGetMessage))
	srv.ClearFaults()
	_, err = sc.GetMessage(t.Context(), 0, 1)
	must.NoError(t, err)
}

func TestSimulator_Faults_slowAndRetryAfter(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	remove := srv.InjectFault(actionssim.Fault{
		Endpoints: []actionssim.Endpoint{actionssim.EndpointRegistrationToken},
		Status:    http.StatusTooManyRequests, RetryAfter: 1500 * time.Millisecond, Count: 1,
		Delay: 50 * time.Millisecond,
	})
	defer remove()
	start := time.Now()
	resp := post(t, srv.URL+"/api/v3/orgs/acme/actions/runners/registration-token", "Bearer "+testPAT, nil)
	must.Eq(t, http.StatusTooManyRequests, resp.status)
	must.Eq(t, "2", resp.header.Get("Retry-After"))
	must.GreaterEq(t, 50*time.Millisecond, time.Since(start))
	resp = post(t, srv.URL+"/api/v3/orgs/acme/actions/runners/registration-token", "Bearer "+testPAT, nil)
	must.Eq(t, http.StatusCreated, resp.status)
}

type rawResp struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url, auth string, body any) rawResp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		must.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	must.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must.NoError(t, err)
	return rawResp{status: resp.StatusCode, header: resp.Header, body: b}
}

func post(t *testing.T, url, auth string, body any) rawResp {
	t.Helper()
	return do(t, http.MethodPost, url, auth, body)
}

// adminToken runs the bootstrap by hand and returns {svc} and the token.
func adminToken(t *testing.T, srv *actionssim.Server) (string, string) {
	t.Helper()
	r := post(t, srv.URL+"/api/v3/orgs/acme/actions/runners/registration-token", "Bearer "+testPAT, nil)
	must.Eq(t, http.StatusCreated, r.status)
	var reg struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	must.NoError(t, json.Unmarshal(r.body, &reg))
	must.NotEq(t, "", reg.ExpiresAt)
	r = post(t, srv.URL+"/api/v3/actions/runner-registration", "RemoteAuth "+reg.Token,
		map[string]string{"url": srv.OrgConfigURL("acme"), "runner_event": "register"})
	must.Eq(t, http.StatusCreated, r.status)
	var conn struct {
		URL   string `json:"url"`
		Token string `json:"token"`
	}
	must.NoError(t, json.Unmarshal(r.body, &conn))
	return conn.URL, conn.Token
}

func TestSimulator_Auth_wireErrors(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	svc, tok := adminToken(t, srv)
	groups := svc + "_apis/runtime/runnergroups/?groupName=default"

	cases := []struct {
		name       string
		url, auth  string
		wantStatus int
		wantBody   string
	}{
		{name: "ok", url: groups + "&api-version=6.0-preview", auth: "Bearer " + tok, wantStatus: 200, wantBody: `"isDefaultGroup":true`},
		{name: "no api-version", url: groups, auth: "Bearer " + tok, wantStatus: 400, wantBody: "api-version"},
		{name: "no token", url: groups + "&api-version=6.0-preview", wantStatus: 401, wantBody: "VssUnauthorizedException"},
		{name: "bad token", url: groups + "&api-version=6.0-preview", auth: "Bearer " + tok + "x", wantStatus: 401, wantBody: "VssUnauthorizedException"},
		{name: "other tenant", url: strings.Replace(groups, "/_services/1/", "/_services/2/", 1) + "&api-version=6.0-preview", auth: "Bearer " + tok, wantStatus: 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, http.MethodGet, tc.url, tc.auth, nil)
			must.Eq(t, tc.wantStatus, r.status, must.Sprintf("body %s", r.body))
			must.StrContains(t, string(r.body), tc.wantBody)
			must.NotEq(t, "", r.header.Get("ActivityId"))
		})
	}

	r := post(t, srv.URL+"/api/v3/repos/acme/app/actions/runners/registration-token", "Bearer nope", nil)
	must.Eq(t, http.StatusUnauthorized, r.status)
	must.StrContains(t, string(r.body), `"message":"Bad credentials"`)
	must.NotEq(t, "", r.header.Get("X-GitHub-Request-Id"))

	r = post(t, srv.URL+"/api/v3/actions/runner-registration", "RemoteAuth NOPE",
		map[string]string{"url": srv.OrgConfigURL("acme"), "runner_event": "register"})
	must.Eq(t, http.StatusUnauthorized, r.status)
}

func TestSimulator_RegistrationToken_scopeBound(t *testing.T) {
	t.Parallel()
	srv := startSim(t, fastOptions())
	r := post(t, srv.URL+"/api/v3/orgs/acme/actions/runners/registration-token", "Bearer "+testPAT, nil)
	var reg struct {
		Token string `json:"token"`
	}
	must.NoError(t, json.Unmarshal(r.body, &reg))
	r = post(t, srv.URL+"/api/v3/actions/runner-registration", "RemoteAuth "+reg.Token,
		map[string]string{"url": srv.OrgConfigURL("other"), "runner_event": "register"})
	must.Eq(t, http.StatusNotFound, r.status)
}

func TestSimulator_ByteOrderMark_decodedByClient(t *testing.T) {
	t.Parallel()
	opts := fastOptions()
	opts.ByteOrderMark = true
	srv := startSim(t, opts)
	c := patClient(t, srv)
	ss := createScaleSet(t, c, "bom")
	sc := sessionClient(t, c, ss.ID)
	srv.QueueJob(actionssim.JobSpec{})
	msg, err := sc.GetMessage(t.Context(), 0, 3)
	must.NoError(t, err)
	must.Len(t, 1, msg.JobAssignedMessages)

	// The BOM really is on the wire.
	svc, tok := adminToken(t, srv)
	r := do(t, http.MethodGet, svc+"_apis/runtime/runnergroups/?api-version=6.0-preview", "Bearer "+tok, nil)
	must.Eq(t, http.StatusOK, r.status)
	must.True(t, bytes.HasPrefix(r.body, []byte("\xef\xbb\xbf")))
}
