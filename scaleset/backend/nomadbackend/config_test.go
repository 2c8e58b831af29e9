// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package nomadbackend

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shoenig/test/must"
)

func TestConfig_Validate_defaults(t *testing.T) {
	c := Config{JobID: "github-runner-macos"}
	must.NoError(t, c.Validate())
	must.Eq(t, DefaultIDPrefixTemplate, c.IDPrefixTemplate)
	must.Eq(t, "runner_name", c.RunnerNameMetaKey)
	must.Eq(t, "runner_scale_set_name", c.ScaleSetMetaKey)
	must.Eq(t, DefaultPurgeGracePeriod, c.PurgeGrace)
	must.Eq(t, DefaultStartupTimeout, c.Startup)
	must.Eq(t, DefaultBlockingWait, c.Wait)
	must.Eq(t, "gha-macos-1", (&Config{IDPrefixTemplate: "gha-{runner_name}"}).idPrefix("macos-1", "s"))
}

func TestConfig_Validate_errors(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no job", Config{}, "job_id: must name the parameterized job"},
		{"dispatched job", Config{JobID: "p/dispatch-1-abcdef01"}, "job_id: \"p/dispatch-1-abcdef01\" is a dispatched job"},
		{"address", Config{JobID: "j", Address: "127.0.0.1:4646"}, "address: \"127.0.0.1:4646\" must be an http://, https:// or unix:// URL"},
		{"template", Config{JobID: "j", IDPrefixTemplate: "gha"}, "id_prefix_template: \"gha\" must contain {runner_name}"},
		{"template slash", Config{JobID: "j", IDPrefixTemplate: "a/{runner_name}"}, "must not contain / or spaces"},
		{"same keys", Config{JobID: "j", ScaleSetMetaKey: "runner_name"}, "scale_set_meta_key: must differ"},
		{"reserved meta", Config{JobID: "j", Meta: map[string]string{"runner_name": "x"}}, "meta: key \"runner_name\" is set by the service itself"},
		{"cert without key", Config{JobID: "j", ClientCert: "c.pem"}, "client_cert: client_cert and client_key must be given together"},
		{"grace", Config{JobID: "j", PurgeGracePeriod: "soon"}, "purge_grace_period: must be a positive duration"},
		{"wait", Config{JobID: "j", BlockingWait: "10m"}, "blocking_wait: 10m0s is above Nomad's maximum of 5m"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			must.ErrorContains(t, err, tc.want)
		})
	}
}

func TestConfig_apiConfig_environment(t *testing.T) {
	env := map[string]string{
		"NOMAD_ADDR": "https://nomad.example:4646", "NOMAD_NAMESPACE": "ci", "NOMAD_TOKEN": "tok",
		"NOMAD_CACERT": "/ca.pem", "NOMAD_REGION": "eu",
	}
	c := Config{JobID: "j"}
	must.NoError(t, c.Validate())
	ac, err := c.apiConfig(func(k string) string { return env[k] })
	must.NoError(t, err)
	must.Eq(t, "https://nomad.example:4646", ac.Address)
	must.Eq(t, "ci", ac.Namespace)
	must.Eq(t, "eu", ac.Region)
	must.Eq(t, "tok", ac.SecretID)
	must.Eq(t, "/ca.pem", ac.TLSConfig.CACert)

	// the block wins over the environment
	c.Address, c.Namespace = "http://10.0.0.1:4646", "runners"
	ac, err = c.apiConfig(func(k string) string { return env[k] })
	must.NoError(t, err)
	must.Eq(t, "http://10.0.0.1:4646", ac.Address)
	must.Eq(t, "runners", ac.Namespace)

	// defaults with nothing set
	ac, err = (&Config{}).apiConfig(func(string) string { return "" })
	must.NoError(t, err)
	must.Eq(t, "http://127.0.0.1:4646", ac.Address)
	must.Eq(t, "default", ac.Namespace)
	must.Eq(t, "", ac.SecretID)
}

func TestConfig_apiConfig_taskAPI(t *testing.T) {
	secrets := t.TempDir()
	must.NoError(t, os.WriteFile(filepath.Join(secrets, "api.sock"), nil, 0o600))
	must.NoError(t, os.WriteFile(filepath.Join(secrets, "nomad_token"), []byte("workload-jwt\n"), 0o600))
	ac, err := (&Config{}).apiConfig(func(k string) string {
		if k == "NOMAD_SECRETS_DIR" {
			return secrets
		}
		return ""
	})
	must.NoError(t, err)
	must.Eq(t, "unix://"+filepath.Join(secrets, "api.sock"), ac.Address)
	must.Eq(t, "workload-jwt", ac.SecretID)

	tokenFile := filepath.Join(t.TempDir(), "token")
	must.NoError(t, os.WriteFile(tokenFile, []byte(" from-file \n"), 0o600))
	ac, err = (&Config{TokenFile: tokenFile}).apiConfig(func(string) string { return "env-token" })
	must.NoError(t, err)
	must.Eq(t, "from-file", ac.SecretID)

	_, err = (&Config{TokenFile: filepath.Join(t.TempDir(), "missing")}).apiConfig(func(string) string { return "" })
	must.ErrorContains(t, err, "token_file: failed to read")
}
