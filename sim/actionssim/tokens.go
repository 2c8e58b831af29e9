// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package actionssim

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Token errors. They never carry the token text.
var (
	errTokenMalformed = errors.New("token is not a well-formed JWT")
	errTokenSignature = errors.New("token signature is invalid")
	errTokenExpired   = errors.New("token has expired")
)

// simClaims are the claims of the JWTs this simulator issues (admin tokens
// and message-queue tokens). The client only reads exp; the rest lets the
// simulator tell tokens apart without a database lookup.
type simClaims struct {
	Issuer    string `json:"iss"`
	Audience  string `json:"aud,omitempty"`
	Subject   string `json:"sub"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	ExpiresAt int64  `json:"exp"`
	// Kind is "admin" or "mq".
	Kind string `json:"kind"`
	// Tenant is the numeric tenant id the token is valid for.
	Tenant int `json:"tid"`
	// Session is the message session id of a message-queue token.
	Session string `json:"sid,omitempty"`
	// Serial makes every token unique and orders them for forced expiry.
	Serial int64 `json:"sim_serial"`
}

var b64url = base64.RawURLEncoding

// signHS256 returns a compact JWT over claims signed with key.
func signHS256(key []byte, claims simClaims) (string, error) {
	header := b64url.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding token claims: %w", err)
	}
	signingInput := header + "." + b64url.EncodeToString(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signingInput))
	return signingInput + "." + b64url.EncodeToString(mac.Sum(nil)), nil
}

// verifyHS256 checks the signature and expiry of a token issued by signHS256
// and returns its claims.
func verifyHS256(key []byte, token string, now time.Time) (simClaims, error) {
	var claims simClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims, errTokenMalformed
	}
	sig, err := b64url.DecodeString(parts[2])
	if err != nil {
		return claims, errTokenMalformed
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return claims, errTokenSignature
	}
	payload, err := b64url.DecodeString(parts[1])
	if err != nil {
		return claims, errTokenMalformed
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return claims, errTokenMalformed
	}
	if now.Unix() >= claims.ExpiresAt {
		return claims, errTokenExpired
	}
	return claims, nil
}

// appClaims are the claims of a GitHub App JWT (reference 1.4.1).
type appClaims struct {
	Issuer    json.RawMessage `json:"iss"`
	IssuedAt  *int64          `json:"iat"`
	ExpiresAt *int64          `json:"exp"`
}

// verifyAppJWT checks an RS256 App JWT against pub and returns its issuer.
// GitHub accepts iat up to 60 s in the future and exp at most 10 min after
// iat; the same limits apply here.
func verifyAppJWT(pub *rsa.PublicKey, token string, now time.Time) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errTokenMalformed
	}
	rawHeader, err := b64url.DecodeString(parts[0])
	if err != nil {
		return "", errTokenMalformed
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(rawHeader, &header); err != nil || header.Alg != "RS256" {
		return "", errTokenMalformed
	}
	sig, err := b64url.DecodeString(parts[2])
	if err != nil {
		return "", errTokenMalformed
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return "", errTokenSignature
	}
	payload, err := b64url.DecodeString(parts[1])
	if err != nil {
		return "", errTokenMalformed
	}
	var claims appClaims
	if err := json.Unmarshal(payload, &claims); err != nil || claims.IssuedAt == nil || claims.ExpiresAt == nil {
		return "", errTokenMalformed
	}
	if now.Unix() >= *claims.ExpiresAt || *claims.IssuedAt > now.Add(60*time.Second).Unix() ||
		*claims.ExpiresAt-*claims.IssuedAt > int64((10*time.Minute)/time.Second) {
		return "", errTokenExpired
	}
	// iss may be a string (client ID) or a number (App ID).
	var iss string
	if err := json.Unmarshal(claims.Issuer, &iss); err != nil {
		var n json.Number
		if err := json.Unmarshal(claims.Issuer, &n); err != nil {
			return "", errTokenMalformed
		}
		iss = n.String()
	}
	return iss, nil
}

// randomToken returns prefix followed by n random bytes in hex.
func randomToken(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return prefix + hex.EncodeToString(b)
}

// newUUID returns a random (version 4) UUID string.
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// secretEqual compares two secrets in constant time.
func secretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
