package proxy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// testCA signs certificates for the tests, written as PEM files.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
	file string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "quaestor test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	ca.file = filepath.Join(ca.dir, "ca.pem")
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a certificate for 127.0.0.1 (server and client use) and
// its key, named name.pem and name-key.pem.
func (ca *testCA) issue(t *testing.T, name string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	writePEM(t, certFile, "CERTIFICATE", der)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startTLSProxy serves a proxy with tlsCfg in front of the backend
// service cfg describes.
func startTLSProxy(t *testing.T, tlsCfg routing.TLSConfig, svc routing.ServiceConfig) string {
	t.Helper()
	table := routing.NewTable()
	if err := routing.LoadStatic(table, []routing.ServiceConfig{svc}); err != nil {
		t.Fatal(err)
	}
	serviceTLS := map[string]*tls.Config{}
	if svc.TLS.Enabled() {
		c, err := svc.TLS.ClientTLS()
		if err != nil {
			t.Fatal(err)
		}
		serviceTLS[svc.Name] = c
	}
	router := newTestRouter(t, routing.Options{Table: table, ServiceTLS: serviceTLS})
	cfg := proxy.DefaultConfig()
	cfg.TLS = tlsCfg
	addr, _ := serveProxy(t, proxy.Options{Config: cfg, Router: router})
	return addr
}

func tlsCall(t *testing.T, addr string, cfg *tls.Config) (*examplev1.EchoResponse, *x509.Certificate, error) {
	t.Helper()
	var serverCert *x509.Certificate
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		serverCert = cs.PeerCertificates[0]
		return nil
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := examplev1.NewEchoClient(cc).Unary(testContext(t), &examplev1.EchoRequest{Payload: []byte("tls")})
	return resp, serverCert, err
}

func TestMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	serverCert, serverKey := ca.issue(t, "proxy", 10)
	clientCert, clientKey := ca.issue(t, "client", 20)
	be := startBackend(t, "b1")
	addr := startTLSProxy(t, routing.TLSConfig{Cert: serverCert, Key: serverKey, CA: ca.file},
		routing.ServiceConfig{Name: echoService, Endpoints: []string{be.addr}})
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	cert, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	resp, got, err := tlsCall(t, addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})
	if err != nil || string(resp.GetPayload()) != "tls" {
		t.Fatalf("call with a client certificate: %v, %v", resp, err)
	}
	if got.SerialNumber.Int64() != 10 {
		t.Errorf("server certificate serial %v", got.SerialNumber)
	}

	// Without a client certificate the handshake fails.
	if _, _, err := tlsCall(t, addr, &tls.Config{RootCAs: pool}); status.Code(err) != codes.Unavailable {
		t.Errorf("call without a client certificate: %v, want Unavailable", err)
	}

	// A renewed certificate takes effect without a restart.
	ca.issue(t, "proxy", 11) // overwrites proxy.pem and proxy-key.pem
	ctx := testContext(t)
	waitFor(ctx, t, "the renewed certificate", func() bool {
		_, got, err := tlsCall(t, addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})
		return err == nil && got.SerialNumber.Int64() == 11
	})
}

// TestBackendTLS: the proxy calls a TLS backend, verifying it with the
// service's CA.
func TestBackendTLS(t *testing.T) {
	ca := newTestCA(t)
	beCert, beKey := ca.issue(t, "backend", 30)
	cert, err := tls.LoadX509KeyPair(beCert, beKey)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{Name: "tls-backend"}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	addr := startTLSProxy(t, routing.TLSConfig{}, routing.ServiceConfig{
		Name: echoService, Endpoints: []string{lis.Addr().String()}, TLS: routing.TLSConfig{CA: ca.file},
	})
	resp, err := examplev1.NewEchoClient(dial(t, addr)).Unary(testContext(t), &examplev1.EchoRequest{})
	if err != nil || resp.GetServer() != "tls-backend" {
		t.Fatalf("call to a TLS backend: %v, %v", resp, err)
	}

	// A CA that did not sign the backend's certificate refuses it.
	other := newTestCA(t)
	addr = startTLSProxy(t, routing.TLSConfig{}, routing.ServiceConfig{
		Name: echoService, Endpoints: []string{lis.Addr().String()}, TLS: routing.TLSConfig{CA: other.file},
	})
	if _, err := examplev1.NewEchoClient(dial(t, addr)).Unary(testContext(t), &examplev1.EchoRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("call to a backend the CA did not sign: %v, want Unavailable", err)
	}
}

func TestTLSConfigErrors(t *testing.T) {
	cfg := proxy.DefaultConfig()
	cfg.TLS = routing.TLSConfig{Cert: "/nonexistent/cert.pem"}
	if err := cfg.Validate(); err == nil || err.Error() != `proxy.tls.cert and proxy.tls.key: give both or neither (cert "/nonexistent/cert.pem", key "")` {
		t.Errorf("cert without key: %v", err)
	}
	cfg.TLS = routing.TLSConfig{Cert: "/nonexistent/cert.pem", Key: "/nonexistent/key.pem"}
	router, err := routing.NewRouter(routing.Options{Table: routing.NewTable()})
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	_, err = proxy.NewServer(proxy.Options{Config: cfg, Router: router, Logger: quietLog})
	if err == nil || !strings.Contains(err.Error(), "proxy.tls: loading /nonexistent/cert.pem") {
		t.Errorf("missing files: %v", err)
	}
	cfg.TLS = routing.TLSConfig{CA: "/nonexistent/ca.pem"}
	if err := cfg.Validate(); err == nil || err.Error() != "proxy.tls.cert: empty, serving TLS needs a certificate and key" {
		t.Errorf("client CA without a certificate: %v", err)
	}
}
