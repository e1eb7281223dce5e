package proxy_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	"github.com/quaestor-go/quaestor/internal/testcert"
	"github.com/quaestor-go/quaestor/internal/testwait"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

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
	ca := testcert.NewCA(t)
	serverCert, serverKey := ca.Issue(t, "proxy", 10)
	clientCert, clientKey := ca.Issue(t, "client", 20)
	be := startBackend(t, "b1")
	addr := startTLSProxy(t, routing.TLSConfig{Cert: serverCert, Key: serverKey, CA: ca.File},
		routing.ServiceConfig{Name: echoService, Endpoints: []string{be.addr}})
	pool := ca.Pool()

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
	ca.Issue(t, "proxy", 11) // overwrites proxy.pem and proxy-key.pem
	ctx := testContext(t)
	testwait.For(ctx, t, "the renewed certificate", func() bool {
		_, got, err := tlsCall(t, addr, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}})
		return err == nil && got.SerialNumber.Int64() == 11
	})
}

// TestBackendTLS: the proxy calls a TLS backend, verifying it with the
// service's CA.
func TestBackendTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	beCert, beKey := ca.Issue(t, "backend", 30)
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
		Name: echoService, Endpoints: []string{lis.Addr().String()}, TLS: routing.TLSConfig{CA: ca.File},
	})
	resp, err := examplev1.NewEchoClient(dial(t, addr)).Unary(testContext(t), &examplev1.EchoRequest{})
	if err != nil || resp.GetServer() != "tls-backend" {
		t.Fatalf("call to a TLS backend: %v, %v", resp, err)
	}

	// A CA that did not sign the backend's certificate refuses it.
	other := testcert.NewCA(t)
	addr = startTLSProxy(t, routing.TLSConfig{}, routing.ServiceConfig{
		Name: echoService, Endpoints: []string{lis.Addr().String()}, TLS: routing.TLSConfig{CA: other.File},
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
