package registry

import (
	"crypto/tls"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/quaestor-go/quaestor/routing"
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
func clientTLS(c routing.TLSConfig, endpoints []string) (*tls.Config, error) {
	secure := c.Enabled()
	for _, ep := range endpoints {
		secure = secure || strings.HasPrefix(ep, "https://")
	}
	if !secure {
		return nil, nil
	}
	cfg, err := c.ClientTLS()
	if err != nil {
		return nil, fmt.Errorf("etcd.tls: %w", err)
	}
	return cfg, nil
}
