package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/quaestor-go/quaestor/routing"
	"github.com/quaestor-go/quaestor/supervisor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "quaestor.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoad(t *testing.T) {
	path := writeFile(t, `
proxy:
  listen: 127.0.0.1:6000
  max_message_size: 1048576
  drain_timeout: 5s
services:
  - name: quaestor.example.v1.Echo
    endpoints: [127.0.0.1:5161, 127.0.0.1:5162]
    policy: failover
  - name: other.v1.Svc
log:
  format: json
etcd:
  mode: external
  endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]
  tls:
    ca: /etc/quaestor/etcd-ca.pem
retry:
  idempotent_methods: [quaestor.example.v1.Echo/Unary, other.v1.Svc/*]
  initial_backoff: 20ms
  budget:
    max_tokens: 50
backends:
  keepalive_time: 30s
`)
	got, err := Load(Source{
		Path:      path,
		Environ:   []string{"QUAESTOR_PROXY_DRAIN_TIMEOUT=7s", "HOME=/root", "QUAESTOR_LOG_LEVEL=debug"},
		Overrides: []string{"proxy.listen=127.0.0.1:7000"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Proxy.Listen = "127.0.0.1:7000"
	want.Proxy.MaxMessageSize = 1 << 20
	want.Proxy.DrainTimeout = 7 * time.Second
	want.Services = []routing.ServiceConfig{
		{Name: "quaestor.example.v1.Echo", Endpoints: []string{"127.0.0.1:5161", "127.0.0.1:5162"}, Policy: "failover"},
		{Name: "other.v1.Svc"},
	}
	want.Log = LogConfig{Level: "debug", Format: "json"}
	want.Etcd.Mode = "external"
	want.Etcd.Endpoints = []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}
	want.Etcd.TLS.CA = "/etc/quaestor/etcd-ca.pem"
	want.Retry.IdempotentMethods = []string{"quaestor.example.v1.Echo/Unary", "other.v1.Svc/*"}
	want.Retry.InitialBackoff = 20 * time.Millisecond
	want.Retry.Budget.MaxTokens = 50
	want.Backends.KeepaliveTime = 30 * time.Second
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

func TestLoadDefaultsOnly(t *testing.T) {
	got, err := Load(Source{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
}

// TestShippedConfigs loads every file under configs/.
func TestShippedConfigs(t *testing.T) {
	paths, err := filepath.Glob("../../../../configs/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no configs found: %v", err)
	}
	for _, path := range paths {
		if _, err := Load(Source{Path: path}); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		environ []string
		sets    []string
		wantErr string
	}{
		{name: "unknown key", file: "proxy:\n  lisen: 127.0.0.1:1\n",
			wantErr: `unknown config key "proxy.lisen" (known keys: proxy.access_log, proxy.advertise, `},
		{name: "unknown section", file: "proxxy:\n  listen: 127.0.0.1:1\n",
			wantErr: `unknown config key "proxxy.listen" (known sections: admin, backends, etcd, health, load, log, proxy, registry, retry, services, supervisor, tracing)`},
		{name: "bad etcd mode", file: "etcd:\n  mode: cluster\n",
			wantErr: `etcd.mode: "cluster" is not embedded, external or none`},
		{name: "unknown tls key", file: "etcd:\n  tls:\n    cafile: x\n",
			wantErr: `unknown config key "etcd.tls.cafile" (known keys: etcd.auto_compaction, etcd.client_url`},
		{name: "short lease", environ: []string{"QUAESTOR_REGISTRY_LEASE_TTL=1s"},
			wantErr: "registry.lease_ttl: 1s is below etcd's minimum of 2s"},
		{name: "hash key missing", file: "services:\n  - name: a.B\n    policy: consistent-hash\n",
			wantErr: "services[0].hash_key: empty, the consistent-hash policy needs the metadata key to hash"},
		{name: "bad health", environ: []string{"QUAESTOR_HEALTH_UNHEALTHY_THRESHOLD=0"},
			wantErr: "health.unhealthy_threshold: 0, want 1 or more"},
		{name: "bad idempotent method", file: "retry:\n  idempotent_methods: [pkg.Svc.Get]\n",
			wantErr: `retry.idempotent_methods[0]: "pkg.Svc.Get" is not service/method`},
		{name: "too many attempts", sets: []string{"retry.max_attempts=9"},
			wantErr: "retry.max_attempts: 9, want 1 to 5"},
		{name: "bad retry budget", file: "retry:\n  budget:\n    token_ratio: -1\n",
			wantErr: "retry.budget.token_ratio: -1, want more than 0"},
		{name: "keepalive too frequent", environ: []string{"QUAESTOR_BACKENDS_KEEPALIVE_TIME=1s"},
			wantErr: "backends.keepalive_time: 1s, want 0 (off) or at least 10s"},
		{name: "stale load", file: "load:\n  interval: 5s\n  max_age: 1s\n",
			wantErr: "load.max_age: 1s is less than load.interval 5s"},
		{name: "bad advertise", file: "proxy:\n  advertise: nowhere\n",
			wantErr: `proxy.advertise: "nowhere" is not host:port`},
		{name: "bad admin listen", file: "admin:\n  listen: nope\n",
			wantErr: `admin.listen: "nope" is not host:port`},
		{name: "unknown key in a service", file: "services:\n  - name: a.B\n    polcy: round-robin\n",
			wantErr: `services[0]: has invalid keys: polcy`},
		{name: "bad listen", file: "proxy:\n  listen: localhost\n",
			wantErr: `proxy.listen: "localhost" is not host:port`},
		{name: "bad size type", file: "proxy:\n  max_message_size: lots\n",
			wantErr: `proxy.max_message_size: value "lots": cannot parse value as 'int'`},
		{name: "negative size", file: "proxy:\n  max_message_size: -1\n",
			wantErr: `proxy.max_message_size: -1 is out of range, want 1 to 2147483647 bytes`},
		{name: "bad duration", file: "proxy:\n  drain_timeout: soon\n",
			wantErr: `proxy.drain_timeout: value "soon": time: invalid duration`},
		{name: "bad policy", file: "proxy:\n  policy: fastest\n",
			wantErr: `proxy.policy: unknown policy "fastest" (known: consistent-hash, failover, least-loaded`},
		{name: "bad endpoint", file: "services:\n  - name: a.B\n    endpoints: [127.0.0.1]\n",
			wantErr: `services[0].endpoints[0]: "127.0.0.1" is not host:port`},
		{name: "bad log level", file: "log:\n  level: loud\n",
			wantErr: `log.level: "loud" is not debug, info, warn or error`},
		{name: "bad yaml", file: "proxy: [\n",
			wantErr: `config: parsing`},
		{name: "unknown env", environ: []string{"QUAESTOR_PROXY_LISEN=x"},
			wantErr: `environment variable QUAESTOR_PROXY_LISEN: unknown config key`},
		{name: "bad env value", environ: []string{"QUAESTOR_PROXY_LISTEN=nope"},
			wantErr: `proxy.listen: "nope" is not host:port`},
		{name: "set without value", sets: []string{"proxy.listen"},
			wantErr: `--set "proxy.listen": want key=value`},
		{name: "set unknown key", sets: []string{"proxy.port=1"},
			wantErr: `--set "proxy.port=1": unknown config key "proxy.port"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := Source{Environ: tt.environ, Overrides: tt.sets}
			if tt.file != "" {
				src.Path = writeFile(t, tt.file)
			}
			_, err := Load(src)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadWarnsOfUnknownEnv(t *testing.T) {
	var warnings []string
	cfg, err := Load(Source{
		Environ: []string{"QUAESTOR_PROXY_LISEN=127.0.0.1:1", "QUAESTOR_PROXY_LISTEN=127.0.0.1:2"},
		Warn:    func(msg string) { warnings = append(warnings, msg) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Proxy.Listen != "127.0.0.1:2" || len(warnings) != 1 || !strings.Contains(warnings[0], "QUAESTOR_PROXY_LISEN: unknown config key") {
		t.Errorf("listen %q, warnings %q", cfg.Proxy.Listen, warnings)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(Source{Path: filepath.Join(t.TempDir(), "none.yaml")})
	if err == nil || !strings.Contains(err.Error(), "none.yaml: no such file") {
		t.Errorf("error = %v", err)
	}
}

// TestReadmeReference checks that the configuration reference in README.md
// lists every key the configuration structs declare, and no other.
func TestReadmeReference(t *testing.T) {
	readme, err := os.ReadFile("../../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, ref, ok := strings.Cut(string(readme), "## Configuration reference")
	if !ok {
		t.Fatal("README.md has no configuration reference")
	}
	ref, _, _ = strings.Cut(ref, "\n## ")
	documented := map[string]bool{}
	for _, line := range strings.Split(ref, "\n") {
		if key, ok := strings.CutPrefix(line, "| `"); ok {
			key, _, _ = strings.Cut(key, "`")
			documented[key] = true
		}
	}
	want := map[string]bool{}
	for _, key := range knownKeys(reflect.TypeFor[Config](), "") {
		want[key] = true
	}
	for _, key := range knownKeys(reflect.TypeFor[routing.ServiceConfig](), "services[].") {
		want[key] = true
	}
	for _, key := range knownKeys(reflect.TypeFor[supervisor.AgentConfig](), "supervisor.agents[].") {
		want[key] = true
	}
	if diff := cmp.Diff(want, documented); diff != "" {
		t.Errorf("README.md configuration reference vs the config structs (-structs +readme):\n%s", diff)
	}
}
