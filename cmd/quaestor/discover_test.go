package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate for 127.0.0.1, which serves
// as its own CA, and its key.
func selfSigned(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{cert: {Type: "CERTIFICATE", Bytes: der}, key: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key
}

// TestDiscoverOverTLS asks a proxy serving TLS with quaestor discover.
func TestDiscoverOverTLS(t *testing.T) {
	worker := startWorker(t)
	listen := freeAddr(t)
	cert, key := selfSigned(t)
	cfg := writeConfig(t, fmt.Sprintf(`
proxy: {listen: %s, tls: {cert: %s, key: %s}}
etcd: {mode: none}
admin: {listen: ""}
services: [{name: quaestor.example.v1.Echo, endpoints: [%s]}]
`, listen, cert, key, worker))
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan int, 1)
	go func() {
		var stdout, stderr strings.Builder
		done <- execute(ctx, []string{"proxy", "-c", cfg}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("quaestor proxy exited with %d", code)
		}
	}()
	discoverArgs := []string{"discover", "-c", cfg, "--top", "--tls-ca", cert, "quaestor.example.v1.Echo"}
	for {
		var stdout, stderr strings.Builder
		if execute(ctx, discoverArgs, &stdout, &stderr) == exitOK && strings.TrimSpace(stdout.String()) == worker {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("discover over TLS never answered: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	var stdout, stderr strings.Builder
	if code := execute(ctx, []string{"discover", "-c", cfg, "quaestor.example.v1.Echo"}, &stdout, &stderr); code == exitOK {
		t.Errorf("plaintext discover of a TLS proxy succeeded: %s", stdout.String())
	}
}
