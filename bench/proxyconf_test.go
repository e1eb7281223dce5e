package main

import (
	"strings"
	"testing"
)

// TestProxyConfigs checks the settings the report and README promise are
// in the generated configurations (TestProxyConfigsAccepted has the real
// binaries parse them).
func TestProxyConfigs(t *testing.T) {
	backends := []string{"127.0.0.1:7001", "127.0.0.1:7002"}
	tests := []struct {
		name string
		cfg  string
		want []string
	}{
		{"haproxy", haproxyConfig("127.0.0.1:6000", backends, 2), []string{
			"nbthread 2",
			"bind 127.0.0.1:6000 proto h2",
			"server b1 127.0.0.1:7001 proto h2",
			"server b2 127.0.0.1:7002 proto h2",
			"http-reuse always",
			"tune.h2.initial-window-size 1048576",
		}},
		{"nginx", nginxConfig("127.0.0.1:6000", backends, 2, "/tmp/n"), []string{
			"daemon off;",
			"worker_processes 2;",
			"pid /tmp/n/nginx.pid;",
			"listen 127.0.0.1:6000 http2;",
			"server 127.0.0.1:7001;",
			"server 127.0.0.1:7002;",
			"keepalive 1024;",
			"grpc_pass grpc://grpc_backends;",
			"access_log off;",
		}},
		{"quaestor static", quaestorConfig("127.0.0.1:6000", "", backends, "", ""), []string{
			"listen: 127.0.0.1:6000",
			"mode: none",
			`listen: ""`,
			"- name: " + echoService,
			`endpoints: ["127.0.0.1:7001", "127.0.0.1:7002"]`,
		}},
		{"quaestor etcd", quaestorConfig("127.0.0.1:6000", "127.0.0.1:6001", nil, "http://127.0.0.1:2379", "/bench-10"), []string{
			"listen: 127.0.0.1:6001",
			"pprof: true",
			"mode: external",
			`endpoints: ["http://127.0.0.1:2379"]`,
			`prefix: "/bench-10"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, want := range tt.want {
				if !strings.Contains(tt.cfg, want) {
					t.Errorf("config lacks %q:\n%s", want, tt.cfg)
				}
			}
		})
	}
	if cfg := quaestorConfig("127.0.0.1:6000", "", nil, "http://127.0.0.1:2379", "/p"); strings.Contains(cfg, "services:") {
		t.Errorf("etcd-only config has a services: list:\n%s", cfg)
	}
}
