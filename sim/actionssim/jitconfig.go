// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The JIT config blob has the real shape (reference section 5): standard
// base64 of a JSON object mapping the runner's hidden config file names to
// the base64 of each file's content.
const (
	JITFileRunner      = ".runner"
	JITFileCredentials = ".credentials"
	JITFileRSAParams   = ".credentials_rsaparams"
)

// ErrBadJITConfig is returned (wrapped) by ParseJITConfig for any blob that
// is not a well-formed JIT config. Its messages never include blob content.
var ErrBadJITConfig = errors.New("invalid JIT config")

// RunnerSettings is the ".runner" file: the runner's identity and where its
// service is.
type RunnerSettings struct {
	AgentID       int    `json:"agentId"`
	AgentName     string `json:"agentName"`
	PoolID        int    `json:"poolId"`
	PoolName      string `json:"poolName"`
	ServerURL     string `json:"serverUrl"`
	GitHubURL     string `json:"gitHubUrl"`
	WorkFolder    string `json:"workFolder"`
	Ephemeral     bool   `json:"ephemeral"`
	DisableUpdate bool   `json:"disableUpdate"`
	UseV2Flow     bool   `json:"useV2Flow"`
}

// Credentials is the ".credentials" file. In this simulator
// Data.AuthorizationURL is the runner-API redeem endpoint.
type Credentials struct {
	Scheme string          `json:"scheme"`
	Data   CredentialsData `json:"data"`
}

// CredentialsData holds the OAuth client identity.
type CredentialsData struct {
	ClientID                string `json:"clientId"`
	AuthorizationURL        string `json:"authorizationUrl"`
	RequireFipsCryptography string `json:"requireFipsCryptography"`
}

// RSAParams is the ".credentials_rsaparams" file, the runner's private key
// in .NET RSAParameters form. In this simulator D carries the one-time
// credential that redeem checks; the other fields are filler.
type RSAParams struct {
	D        string `json:"d"`
	DP       string `json:"dp"`
	DQ       string `json:"dq"`
	Exponent string `json:"exponent"`
	InverseQ string `json:"inverseQ"`
	Modulus  string `json:"modulus"`
	P        string `json:"p"`
	Q        string `json:"q"`
}

// JITConfig is the decoded content of an encodedJITConfig blob.
type JITConfig struct {
	Runner      RunnerSettings
	Credentials Credentials
	RSAParams   RSAParams
}

// RedeemURL is where a runner exchanges the one-time credential.
func (c JITConfig) RedeemURL() string { return c.Credentials.Data.AuthorizationURL }

// EncodeJITConfig returns the blob for c.
func EncodeJITConfig(c JITConfig) (string, error) {
	files := map[string]any{
		JITFileRunner: c.Runner, JITFileCredentials: c.Credentials, JITFileRSAParams: c.RSAParams,
	}
	outer := make(map[string]string, len(files))
	for name, v := range files {
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("encoding JIT file %s: %w", name, err)
		}
		outer[name] = base64.StdEncoding.EncodeToString(b)
	}
	b, err := json.Marshal(outer)
	if err != nil {
		return "", fmt.Errorf("encoding JIT config: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// ParseJITConfig decodes a blob. Surrounding white space is ignored (a blob
// read from a file or stdin usually ends with a newline).
func ParseJITConfig(blob string) (JITConfig, error) {
	var c JITConfig
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(blob))
	if err != nil {
		return c, fmt.Errorf("%w: not standard base64", ErrBadJITConfig)
	}
	var outer map[string]string
	if err := json.Unmarshal(raw, &outer); err != nil {
		return c, fmt.Errorf("%w: not a JSON object of files", ErrBadJITConfig)
	}
	files := []struct {
		name string
		dst  any
	}{{JITFileRunner, &c.Runner}, {JITFileCredentials, &c.Credentials}, {JITFileRSAParams, &c.RSAParams}}
	for _, f := range files {
		enc, ok := outer[f.name]
		if !ok {
			return c, fmt.Errorf("%w: file %s is missing", ErrBadJITConfig, f.name)
		}
		content, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return c, fmt.Errorf("%w: file %s is not base64", ErrBadJITConfig, f.name)
		}
		if err := json.Unmarshal(content, f.dst); err != nil {
			return c, fmt.Errorf("%w: file %s is not valid JSON", ErrBadJITConfig, f.name)
		}
	}
	switch {
	case c.Runner.AgentID <= 0:
		return c, fmt.Errorf("%w: %s agentId must be positive", ErrBadJITConfig, JITFileRunner)
	case c.Credentials.Data.ClientID == "":
		return c, fmt.Errorf("%w: %s clientId is empty", ErrBadJITConfig, JITFileCredentials)
	case !strings.HasPrefix(c.Credentials.Data.AuthorizationURL, "http://") && !strings.HasPrefix(c.Credentials.Data.AuthorizationURL, "https://"):
		return c, fmt.Errorf("%w: %s authorizationUrl is not an http(s) URL", ErrBadJITConfig, JITFileCredentials)
	case c.RSAParams.D == "":
		return c, fmt.Errorf("%w: %s has no key", ErrBadJITConfig, JITFileRSAParams)
	}
	return c, nil
}
