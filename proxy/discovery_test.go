package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	sdpb "github.com/quaestor-go/quaestor/proto/servicediscovery"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// discoveryEnv is a proxy answering the look-aside RPCs from a routing
// table whose endpoints carry loads set by the test.
type discoveryEnv struct {
	table  *routing.Table
	client sdpb.ServiceDiscoveryGrpcClient
}

func startDiscovery(t testing.TB, services map[string][]string) *discoveryEnv {
	t.Helper()
	table := routing.NewTable()
	var list []routing.ServiceConfig
	for name, addrs := range services {
		list = append(list, routing.ServiceConfig{Name: name, Endpoints: addrs})
	}
	if err := routing.LoadStatic(table, list); err != nil {
		t.Fatal(err)
	}
	router := newTestRouter(t, routing.Options{Table: table})
	addr, _ := serveProxy(t, proxy.Options{Config: proxy.DefaultConfig(), Router: router, Locator: router, Scope: "prod"})
	return &discoveryEnv{table: table, client: sdpb.NewServiceDiscoveryGrpcClient(dialTB(t, addr))}
}

func (e *discoveryEnv) setLoad(t testing.TB, service, addr string, rate float64) {
	t.Helper()
	eps, _ := e.table.Endpoints(service)
	for _, ep := range eps {
		if ep.Addr == addr {
			ep.State.SetLoad(&routing.LoadReport{KnownLoadRate: rate, Time: time.Now()})
			return
		}
	}
	t.Fatalf("no endpoint %s", addr)
}

func loc(scope, service, host string, port int32) *sdpb.ServiceLocationMsg {
	return &sdpb.ServiceLocationMsg{Scope: scope, ServiceName: service, HostName: host, Port: port}
}

func TestDiscoverTopServices(t *testing.T) {
	e := startDiscovery(t, map[string][]string{
		echoService: {"10.0.0.1:5161", "10.0.0.2:5161", "10.0.0.3:5161"},
		"Worker":    {"10.0.0.9:7000"},
		"WorkerX":   {"10.0.0.8:7000"},
	})
	e.setLoad(t, echoService, "10.0.0.1:5161", 0.7)
	e.setLoad(t, echoService, "10.0.0.2:5161", 0.2)
	e.setLoad(t, echoService, "10.0.0.3:5161", 0.4)
	ctx := testContext(t)

	tests := []struct {
		name string
		req  *sdpb.DiscoverServicesRequest
		want []*sdpb.ServiceLocationMsg
	}{
		{name: "ranked", req: &sdpb.DiscoverServicesRequest{ServiceName: echoService},
			want: []*sdpb.ServiceLocationMsg{
				loc("prod", echoService, "10.0.0.2", 5161), loc("prod", echoService, "10.0.0.3", 5161), loc("prod", echoService, "10.0.0.1", 5161)}},
		{name: "max count", req: &sdpb.DiscoverServicesRequest{Scope: "prod", ServiceName: echoService, MaxCount: 2},
			want: []*sdpb.ServiceLocationMsg{loc("prod", echoService, "10.0.0.2", 5161), loc("prod", echoService, "10.0.0.3", 5161)}},
		{name: "exact name", req: &sdpb.DiscoverServicesRequest{ServiceName: "Worker"},
			want: []*sdpb.ServiceLocationMsg{loc("prod", "Worker", "10.0.0.9", 7000)}},
		{name: "other scope", req: &sdpb.DiscoverServicesRequest{Scope: "test", ServiceName: echoService}},
		{name: "unknown service", req: &sdpb.DiscoverServicesRequest{ServiceName: "nosuch.Svc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client.DiscoverTopServices(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, resp.GetServiceLocations(), protocmp.Transform(), cmp.Comparer(func(a, b []*sdpb.ServiceLocationMsg) bool {
				return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b, protocmp.Transform())
			})); diff != "" {
				t.Errorf("locations (-want +got):\n%s", diff)
			}
		})
	}

	best, err := e.client.DiscoverTopService(ctx, &sdpb.DiscoverServicesRequest{ServiceName: echoService})
	if err != nil || best.GetHostName() != "10.0.0.2" {
		t.Errorf("DiscoverTopService = %v, %v", best, err)
	}
	// The ranking follows the loads.
	e.setLoad(t, echoService, "10.0.0.1:5161", 0.01)
	if best, _ := e.client.DiscoverTopService(ctx, &sdpb.DiscoverServicesRequest{ServiceName: echoService}); best.GetHostName() != "10.0.0.1" {
		t.Errorf("after a load change, best = %v", best)
	}

	all, err := e.client.DiscoverServices(ctx, &sdpb.DiscoverServicesRequest{ServiceName: echoService})
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, l := range all.GetServiceLocations() {
		hosts = append(hosts, l.GetHostName())
	}
	slices.Sort(hosts)
	if diff := cmp.Diff([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, hosts); diff != "" {
		t.Errorf("DiscoverServices hosts (-want +got):\n%s", diff)
	}
}

func TestDiscoverTopServiceErrors(t *testing.T) {
	e := startDiscovery(t, map[string][]string{echoService: {"10.0.0.1:5161"}, "Empty": nil})
	ctx := testContext(t)
	tests := []struct {
		req  *sdpb.DiscoverServicesRequest
		code codes.Code
		msg  string
	}{
		{&sdpb.DiscoverServicesRequest{ServiceName: "nosuch.Svc"}, codes.NotFound, `unknown service "nosuch.Svc": no instance of it is listed in the config or registered`},
		{&sdpb.DiscoverServicesRequest{ServiceName: "Empty"}, codes.Unavailable, `no healthy instance of service "Empty"`},
		{&sdpb.DiscoverServicesRequest{Scope: "test", ServiceName: echoService}, codes.NotFound, `scope "test" is not served here (this proxy serves scope "prod")`},
	}
	for _, tt := range tests {
		_, err := e.client.DiscoverTopService(ctx, tt.req)
		if st := status.Convert(err); st.Code() != tt.code || st.Message() != "quaestor: "+tt.msg {
			t.Errorf("DiscoverTopService(%v) = %v, want %v %q", tt.req, err, tt.code, tt.msg)
		}
	}
}

// BenchmarkDiscoverTopServices measures a look-aside call over loopback,
// answered from the routing table.
func BenchmarkDiscoverTopServices(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			addrs := make([]string, n)
			for i := range addrs {
				addrs[i] = fmt.Sprintf("10.%d.%d.%d:5161", i>>16&255, i>>8&255, i&255)
			}
			e := startDiscovery(b, map[string][]string{echoService: addrs})
			ctx := context.Background()
			req := &sdpb.DiscoverServicesRequest{ServiceName: echoService, MaxCount: 3}
			b.ResetTimer()
			for range b.N {
				if _, err := e.client.DiscoverTopServices(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
