package config

import (
	"net"
	"net/netip"
	"net/url"
	"testing"
)

// TestDefaultsListenOnLoopback: with no configuration, nothing quaestor
// serves is reachable from another machine, and the profiler is off.
func TestDefaultsListenOnLoopback(t *testing.T) {
	cfg := Default()
	for key, addr := range map[string]string{
		"proxy.listen":    cfg.Proxy.Listen,
		"admin.listen":    cfg.Admin.Listen,
		"etcd.client_url": cfg.Etcd.ClientURL,
		"etcd.peer_url":   cfg.Etcd.PeerURL,
	} {
		hostPort := addr
		if u, err := url.Parse(addr); err == nil && u.Host != "" {
			hostPort = u.Host
		}
		host, _, _ := net.SplitHostPort(hostPort)
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsLoopback() {
			t.Errorf("%s defaults to %q, not a loopback address", key, addr)
		}
	}
	if cfg.Admin.Pprof {
		t.Error("admin.pprof is on by default")
	}
}
