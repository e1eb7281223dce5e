package registry

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/etcd/client/v3/naming/endpoints"

	"github.com/quaestor-go/quaestor/routing"
)

func TestKeys(t *testing.T) {
	if got := InstanceKey("/quaestor", "default", "pkg.Svc", "i-1"); got != "/quaestor/services/default/pkg.Svc/i-1" {
		t.Errorf("InstanceKey = %q", got)
	}
	// The trailing slash keeps Worker from matching WorkerX.
	if got := ServicePrefix("/quaestor", "default", "Worker"); got != "/quaestor/services/default/Worker/" {
		t.Errorf("ServicePrefix = %q", got)
	}
	scope := ScopePrefix("/quaestor", "default")
	tests := []struct {
		key, service, id, err string
	}{
		{key: "/quaestor/services/default/pkg.Svc/i-1", service: "pkg.Svc", id: "i-1"},
		{key: "/quaestor/services/default/pkg.Svc/127.0.0.1:5161", service: "pkg.Svc", id: "127.0.0.1:5161"},
		{key: "/quaestor/services/default/pkg.Svc", err: "is not /quaestor/services/default/{service}/{instance-id}"},
		{key: "/quaestor/services/default/pkg.Svc/a/b", err: "is not /quaestor/services/default/{service}/{instance-id}"},
		{key: "/quaestor/services/other/pkg.Svc/a", err: "is not under"},
	}
	for _, tt := range tests {
		service, id, err := parseKey(scope, tt.key)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseKey(%q) error = %v, want %q", tt.key, err, tt.err)
			}
			continue
		}
		if err != nil || service != tt.service || id != tt.id {
			t.Errorf("parseKey(%q) = %q, %q, %v", tt.key, service, id, err)
		}
	}
}

func TestDecodeValue(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		want    routing.Endpoint
		wantErr string
	}{
		{name: "plain", value: `{"Op":0,"Addr":"127.0.0.1:5161"}`, want: routing.Endpoint{Addr: "127.0.0.1:5161"}},
		{name: "metadata", value: `{"Op":0,"Addr":"10.0.0.1:1","Metadata":{"tls":true,"weight":3,"agent":"host-a","zone":"z1"}}`,
			want: routing.Endpoint{Addr: "10.0.0.1:1", Metadata: map[string]string{"tls": "true", "weight": "3", "agent": "host-a", "zone": "z1"}}},
		{name: "metadata not a map", value: `{"Op":0,"Addr":"10.0.0.1:1","Metadata":"x"}`, wantErr: "not endpoint JSON"},
		{name: "not json", value: `127.0.0.1:5161`, wantErr: "value is not endpoint JSON"},
		{name: "delete op", value: `{"Op":1,"Addr":"127.0.0.1:5161"}`, wantErr: "Op 1, want 0"},
		{name: "no addr", value: `{"Op":0}`, wantErr: "bad Addr"},
		{name: "bad addr", value: `{"Op":0,"Addr":"nowhere"}`, wantErr: `"nowhere" is not host:port`},
		{name: "bad weight", value: `{"Op":0,"Addr":"127.0.0.1:1","Metadata":{"weight":-2}}`, wantErr: `weight "-2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeValue([]byte(tt.value))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("endpoint (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValueCompatibleWithEtcdEndpoints writes with each side and reads
// with the other: etcd's naming/endpoints and quaestor share the format.
func TestValueCompatibleWithEtcdEndpoints(t *testing.T) {
	client := startEtcd(t).client
	ctx := testContext(t)
	em, err := endpoints.NewManager(client, "/quaestor/services/default/pkg.Svc")
	if err != nil {
		t.Fatal(err)
	}
	if err := em.AddEndpoint(ctx, "/quaestor/services/default/pkg.Svc/theirs",
		endpoints.Endpoint{Addr: "127.0.0.1:7001", Metadata: map[string]any{"weight": 2}}); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(ctx, "/quaestor/services/default/pkg.Svc/theirs")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := decodeValue(resp.Kvs[0].Value)
	if err != nil || ep.Addr != "127.0.0.1:7001" || ep.Metadata["weight"] != "2" {
		t.Errorf("decoding etcd's value: %+v, %v", ep, err)
	}

	value, err := encodeValue("127.0.0.1:7002", map[string]string{"tls": "false", "agent": "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Put(ctx, "/quaestor/services/default/pkg.Svc/ours", value); err != nil {
		t.Fatal(err)
	}
	list, err := em.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ours := list["/quaestor/services/default/pkg.Svc/ours"]
	if diff := cmp.Diff(endpoints.Endpoint{Addr: "127.0.0.1:7002", Metadata: map[string]any{"tls": false, "agent": "a"}}, ours); diff != "" {
		t.Errorf("etcd's reading of our value (-want +got):\n%s", diff)
	}
}

func TestBackoff(t *testing.T) {
	b := &backoff{min: 100, max: 1000, rand: func() float64 { return 0.999999 }}
	var got []int
	for range 6 {
		got = append(got, int(b.next()))
	}
	if diff := cmp.Diff([]int{99, 199, 399, 799, 999, 999}, got); diff != "" {
		t.Errorf("upper waits (-want +got):\n%s", diff)
	}
	b = &backoff{min: 100, max: 1000, rand: func() float64 { return 0 }}
	if got := b.next(); got != 50 {
		t.Errorf("lowest first wait = %d, want 50", got)
	}
	b.next()
	b.reset()
	if got := b.next(); got != 50 {
		t.Errorf("after reset = %d, want 50", got)
	}
}
