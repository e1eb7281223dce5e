package routing_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/quaestor-go/quaestor/internal/testwait"
	"github.com/quaestor-go/quaestor/routing"
)

// recordingConn is a real connection that records the calls made on it.
type recordingConn struct {
	grpc.ClientConnInterface
	mu      sync.Mutex
	methods []string
}

func (c *recordingConn) record(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.methods, method) {
		c.methods = append(c.methods, method)
	}
}

func (c *recordingConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	c.record(method)
	return c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
}

func (c *recordingConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	c.record(method)
	return c.ClientConnInterface.NewStream(ctx, desc, method, opts...)
}

// TestMonitorConnect: with MonitorOptions.Connect, health checks and load
// polls go on the connection it gives for each endpoint, which the monitor
// leaves open when it stops.
func TestMonitorConnect(t *testing.T) {
	ctx := testContext(t)
	b := startTestBackend(t, "a", dotnetBackend, 0.25)
	b.health.SetServingStatus(echoService, healthpb.HealthCheckResponse_NOT_SERVING)
	cc, err := grpc.NewClient(b.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	conn := &recordingConn{ClientConnInterface: cc}
	var connected []string
	var mu sync.Mutex
	table := routing.NewTable()
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{{Addr: b.addr}})
	mon, err := routing.StartMonitor(routing.MonitorOptions{
		Table: table,
		Load:  routing.LoadConfig{Interval: 50 * time.Millisecond, MaxAge: 10 * time.Second},
		Connect: func(service, addr string) grpc.ClientConnInterface {
			mu.Lock()
			connected = append(connected, service+" "+addr)
			mu.Unlock()
			return conn
		},
		Logger: quietLogger,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	eps, _ := table.Endpoints(echoService)
	state := eps[0].State
	testwait.For(ctx, t, "the endpoint unhealthy, with its load", func() bool {
		return !state.Healthy() && state.FreshLoad(time.Now(), time.Minute) != nil
	})
	b.health.SetServingStatus(echoService, healthpb.HealthCheckResponse_SERVING)
	testwait.For(ctx, t, "the endpoint healthy", state.Healthy)
	mon.Close()

	mu.Lock()
	if want := []string{echoService + " " + b.addr}; !slices.Equal(connected, want) {
		t.Errorf("Connect called for %q, want %q", connected, want)
	}
	mu.Unlock()
	conn.mu.Lock()
	for _, want := range []string{"/grpc.health.v1.Health/Watch", "/Quaestor.LoadReporting.LoadReportingGrpc/ReportLoad"} {
		if !slices.Contains(conn.methods, want) {
			t.Errorf("calls on the given connection %q, want %s among them", conn.methods, want)
		}
	}
	conn.mu.Unlock()
	if st := cc.GetState(); st == connectivity.Shutdown {
		t.Error("the monitor closed the connection Connect gave it")
	}
}
