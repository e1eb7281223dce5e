package registry

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/quaestor-go/quaestor/routing"
)

// How the etcd client notices a lost connection and reconnects.
const (
	// etcdKeepAliveTime and etcdKeepAliveTimeout: a connection whose
	// packets are silently dropped (a cable pulled, a firewall, a host
	// gone) shows no error until TCP gives up, many minutes later; a ping
	// after 10 s without traffic, unanswered within 5 s, closes it, so
	// that discovery reports the gap. 10 s is grpc-go's least ping
	// interval, and above etcd's default --grpc-keepalive-min-time (5 s).
	etcdKeepAliveTime    = 10 * time.Second
	etcdKeepAliveTimeout = 5 * time.Second
	// etcdReconnectMax caps the wait between attempts to reconnect. gRPC's
	// default grows to two minutes, so after an outage of a minute the
	// client could stay away for another one; a failed attempt costs little.
	etcdReconnectMax = time.Second
)

// NewClient connects to the etcd that cfg names: the external cluster, or
// the embedded etcd's client URL. It does not wait for a connection; the
// first request does.
func NewClient(cfg EtcdConfig) (*clientv3.Client, error) {
	ccfg, err := clientConfig(cfg)
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("registry: connecting to etcd %s: %w", strings.Join(ccfg.Endpoints, ","), err)
	}
	return client, nil
}

// clientConfig is the etcd client configuration of cfg.
func clientConfig(cfg EtcdConfig) (clientv3.Config, error) {
	endpoints := cfg.Endpoints
	if cfg.Mode == ModeEmbedded {
		endpoints = []string{cfg.ClientURL}
	}
	if len(endpoints) == 0 {
		return clientv3.Config{}, fmt.Errorf("registry: no etcd endpoints (etcd.mode %q)", cfg.Mode)
	}
	tlsConfig, err := clientTLS(cfg.TLS, endpoints)
	if err != nil {
		return clientv3.Config{}, err
	}
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsConfig,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// The client's own logs are not quaestor's; its failures surface
		// as errors that quaestor logs.
		Logger:               zap.NewNop(),
		DialKeepAliveTime:    etcdKeepAliveTime,
		DialKeepAliveTimeout: etcdKeepAliveTimeout,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  minBackoff,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   etcdReconnectMax,
			},
			MinConnectTimeout: 20 * time.Second, // gRPC's default
		})},
	}, nil
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
