package registry

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/quaestor-go/quaestor/internal/testcert"
	"github.com/quaestor-go/quaestor/routing"
)

// TestEtcdClientTLS connects to an etcd that requires client certificates,
// as an external cluster secured with TLS does.
func TestEtcdClientTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	cert, key := ca.Issue(t, "etcd", 2)
	clientURL, _ := url.Parse(fmt.Sprintf("https://127.0.0.1:%d", freePort(t)))
	peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*clientURL}, []url.URL{*clientURL}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peerURL}, []url.URL{*peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.ClientTLSInfo = transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: ca.File, ClientCertAuth: true}
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd with TLS did not start")
	}

	connect := func(tlsCfg routing.TLSConfig) error {
		c := DefaultEtcdConfig()
		c.Mode, c.Endpoints, c.TLS = ModeExternal, []string{clientURL.String()}, tlsCfg
		if err := c.Validate(); err != nil {
			return err
		}
		client, err := NewClient(c)
		if err != nil {
			return err
		}
		defer client.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		_, err = client.Put(ctx, "/quaestor/tls", "ok")
		return err
	}
	if err := connect(routing.TLSConfig{CA: ca.File, Cert: cert, Key: key}); err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	if err := connect(routing.TLSConfig{CA: ca.File}); err == nil {
		t.Error("an etcd requiring client certificates accepted a client without one")
	}
	if err := connect(routing.TLSConfig{Cert: cert, Key: key}); err == nil {
		t.Error("a server certificate from an unknown CA was accepted")
	}
}
