// Copyright (c) The nomad-driver-tart Authors
// SPDX-License-Identifier: MPL-2.0

package testutil

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
)

var (
	rsaKeyOnce sync.Once
	rsaKey     *rsa.PrivateKey
	rsaKeyPEM  string
	rsaKeyErr  error
)

// RSAPrivateKeyPEM returns a PKCS#1 PEM RSA key, as GitHub issues App
// keys, generated once per test binary (generation is slow under -race).
func RSAPrivateKeyPEM(t testing.TB) string {
	t.Helper()
	_, keyPEM := RSAPrivateKey(t)
	return keyPEM
}

// RSAPrivateKey returns the key RSAPrivateKeyPEM renders and its PEM, for
// tests that also need the public half (a simulated GitHub App's).
func RSAPrivateKey(t testing.TB) (*rsa.PrivateKey, string) {
	t.Helper()
	rsaKeyOnce.Do(func() {
		rsaKey, rsaKeyErr = rsa.GenerateKey(rand.Reader, 2048)
		if rsaKeyErr == nil {
			rsaKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
		}
	})
	if rsaKeyErr != nil {
		t.Fatalf("testutil: generate RSA key: %v", rsaKeyErr)
	}
	return rsaKey, rsaKeyPEM
}
