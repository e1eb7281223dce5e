package registry

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// NewClient connects to the etcd that cfg names: the external cluster, or
// the embedded etcd's client URL. It does not wait for a connection; the
// first request does.
func NewClient(cfg EtcdConfig) (*clientv3.Client, error) {
	endpoints := cfg.Endpoints
	if cfg.Mode == ModeEmbedded {
		endpoints = []string{cfg.ClientURL}
	}
	if len(endpoints) == 0 {
		return nil, fmt.Errorf("registry: no etcd endpoints (etcd.mode %q)", cfg.Mode)
	}
	tlsConfig, err := clientTLS(cfg.TLS, endpoints)
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsConfig,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// The client's own logs are not quaestor's; its failures surface
		// as errors that quaestor logs.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("registry: connecting to etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return client, nil
}

// clientTLS builds the TLS config for https endpoints, or nil.
func clientTLS(c TLSConfig, endpoints []string) (*tls.Config, error) {
	secure := c.CA != "" || c.Cert != ""
	for _, ep := range endpoints {
		secure = secure || strings.HasPrefix(ep, "https://")
	}
	if !secure {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("etcd.tls.ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd.tls.ca: %s holds no PEM certificate", c.CA)
		}
		cfg.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd.tls.cert/etcd.tls.key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
