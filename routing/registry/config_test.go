package registry

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*EtcdConfig, *Config)
		wantErr string
	}{
		{name: "defaults", edit: func(*EtcdConfig, *Config) {}},
		{name: "none needs nothing", edit: func(e *EtcdConfig, _ *Config) { *e = EtcdConfig{Mode: ModeNone} }},
		{name: "bad mode", edit: func(e *EtcdConfig, _ *Config) { e.Mode = "cluster" },
			wantErr: `etcd.mode: "cluster" is not embedded, external or none`},
		{name: "external without endpoints", edit: func(e *EtcdConfig, _ *Config) { e.Mode = ModeExternal },
			wantErr: "etcd.endpoints: empty"},
		{name: "external bad endpoint", edit: func(e *EtcdConfig, _ *Config) {
			e.Mode, e.Endpoints = ModeExternal, []string{"http://10.0.0.1:2379", "10.0.0.2:2379"}
		}, wantErr: `etcd.endpoints[1]: "10.0.0.2:2379" is not an http:// or https:// URL`},
		{name: "cert without key", edit: func(e *EtcdConfig, _ *Config) {
			e.Mode, e.Endpoints, e.TLS.Cert = ModeExternal, []string{"https://10.0.0.1:2379"}, "c.pem"
		}, wantErr: "etcd.tls.cert and etcd.tls.key: give both or neither"},
		{name: "user without password", edit: func(e *EtcdConfig, _ *Config) {
			e.Mode, e.Endpoints, e.Username = ModeExternal, []string{"https://10.0.0.1:2379"}, "u"
		}, wantErr: "etcd.username and etcd.password"},
		{name: "client url without port", edit: func(e *EtcdConfig, _ *Config) { e.ClientURL = "http://127.0.0.1" },
			wantErr: `etcd.client_url: "http://127.0.0.1" has no port`},
		{name: "empty dir", edit: func(e *EtcdConfig, _ *Config) { e.Dir = "" }, wantErr: "etcd.dir: empty"},
		{name: "prefix", edit: func(e *EtcdConfig, _ *Config) { e.Prefix = "quaestor/" },
			wantErr: `etcd.prefix: "quaestor/"`},
		{name: "short ttl", edit: func(_ *EtcdConfig, r *Config) { r.LeaseTTL = time.Second },
			wantErr: "registry.lease_ttl: 1s is below etcd's minimum of 2s"},
		{name: "scope", edit: func(_ *EtcdConfig, r *Config) { r.Scope = "a/b" },
			wantErr: `registry.scope: "a/b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			etcd, reg := DefaultEtcdConfig(), DefaultConfig()
			tt.edit(&etcd, &reg)
			err := etcd.Validate()
			if err == nil {
				err = reg.Validate()
			}
			got := ""
			if err != nil {
				got = err.Error()
			}
			if tt.wantErr == "" && got != "" || !strings.Contains(got, tt.wantErr) {
				t.Errorf("error = %q, want %q", got, tt.wantErr)
			}
		})
	}
}
