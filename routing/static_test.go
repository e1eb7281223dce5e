package routing_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/quaestor-go/quaestor/routing"
)

func TestValidateServices(t *testing.T) {
	tests := []struct {
		name     string
		services []routing.ServiceConfig
		wantErr  string
	}{
		{name: "valid", services: []routing.ServiceConfig{
			{Name: "a.B", Endpoints: []string{"127.0.0.1:1", "[::1]:2", "host.example:3"}},
			{Name: "a.C", Policy: routing.PolicyFailover},
		}},
		{name: "empty name", services: []routing.ServiceConfig{{}},
			wantErr: "services[0].name: service name is empty"},
		{name: "slash in name", services: []routing.ServiceConfig{{Name: "a/B"}},
			wantErr: `services[0].name: service name "a/B" contains '/' or white space`},
		{name: "duplicate", services: []routing.ServiceConfig{{Name: "a.B"}, {Name: "a.B"}},
			wantErr: `services[1].name: "a.B" is already listed as services[0]`},
		{name: "no port", services: []routing.ServiceConfig{{Name: "a.B", Endpoints: []string{"127.0.0.1:1", "localhost"}}},
			wantErr: `services[0].endpoints[1]: "localhost" is not host:port: address localhost: missing port in address`},
		{name: "bad port", services: []routing.ServiceConfig{{Name: "a.B", Endpoints: []string{"127.0.0.1:99999"}}},
			wantErr: `services[0].endpoints[0]: "127.0.0.1:99999" has port "99999", want a number from 1 to 65535`},
		{name: "no host", services: []routing.ServiceConfig{{Name: "a.B", Endpoints: []string{":80"}}},
			wantErr: `services[0].endpoints[0]: ":80" has no host`},
		{name: "unknown policy", services: []routing.ServiceConfig{{Name: "a.B", Policy: "fastest"}},
			wantErr: `services[0].policy: unknown policy "fastest" (known: consistent-hash, failover, least-loaded, least-request, peak-ewma, round-robin, weighted-round-robin)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := routing.ValidateServices(tt.services)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("error = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestLoadStaticReplaces(t *testing.T) {
	table := routing.NewTable()
	table.Update("registered.Svc", "etcd", []routing.Endpoint{{Addr: "127.0.0.1:9"}})
	if err := routing.LoadStatic(table, []routing.ServiceConfig{{Name: "a.B", Endpoints: []string{"127.0.0.1:1"}}, {Name: "a.C"}}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a.B", "a.C", "registered.Svc"}, table.Services()); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	// Reloading without a.C forgets it, and leaves other sources alone.
	if err := routing.LoadStatic(table, []routing.ServiceConfig{{Name: "a.B", Endpoints: []string{"127.0.0.1:2"}}}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a.B", "registered.Svc"}, table.Services()); diff != "" {
		t.Errorf("services after reload (-want +got):\n%s", diff)
	}
	eps, _ := table.Endpoints("a.B")
	if len(eps) != 1 || eps[0].Addr != "127.0.0.1:2" {
		t.Errorf("a.B after reload: %v", eps)
	}
	if err := routing.LoadStatic(table, []routing.ServiceConfig{{Name: ""}}); err == nil {
		t.Error("invalid services loaded without error")
	}
}
