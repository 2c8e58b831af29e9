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
	rsaKeyPEM  string
	rsaKeyErr  error
)

// RSAPrivateKeyPEM returns a PKCS#1 PEM RSA key, as GitHub issues App
// keys, generated once per test binary (generation is slow under -race).
func RSAPrivateKeyPEM(t testing.TB) string {
	t.Helper()
	rsaKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			rsaKeyErr = err
			return
		}
		rsaKeyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
	})
	if rsaKeyErr != nil {
		t.Fatalf("testutil: generate RSA key: %v", rsaKeyErr)
	}
	return rsaKeyPEM
}
