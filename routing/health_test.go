package routing_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/quaestor-go/quaestor/internal/syncbuf"
	"github.com/quaestor-go/quaestor/internal/testwait"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing"
)

// hangingBackend answers Echo and health until hang is set; then nothing
// it is asked returns until the caller gives up, as a stopped process or
// a wedged server. Its Watch said SERVING once and says nothing more.
type hangingBackend struct {
	examplev1.UnimplementedEchoServer
	healthpb.UnimplementedHealthServer
	name string
	addr string
	hang atomic.Bool
	held atomic.Int64 // Echo calls held while hanging
}

func startHangingBackend(t *testing.T, name string) *hangingBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &hangingBackend{name: name, addr: lis.Addr().String()}
	srv := grpc.NewServer()
	examplev1.RegisterEchoServer(srv, b)
	healthpb.RegisterHealthServer(srv, b)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return b
}

func (b *hangingBackend) Unary(ctx context.Context, _ *examplev1.EchoRequest) (*examplev1.EchoResponse, error) {
	if b.hang.Load() {
		b.held.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &examplev1.EchoResponse{Server: b.name}, nil
}

func (b *hangingBackend) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if b.hang.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (b *hangingBackend) Watch(_ *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	if err := stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// TestHungBackendFoundWhileWatching: a backend that hangs with its
// connection open sends no change on its health Watch, and no keepalive
// is set; the health checks sent while calls are stuck on it find it, new
// calls go elsewhere, and it comes back once it answers again.
func TestHungBackendFoundWhileWatching(t *testing.T) {
	a := startTestBackend(t, "a", plainBackend, 0)
	b := startHangingBackend(t, "b")
	m := startMonitored(t, routing.PolicyRoundRobin, a, &testBackend{name: b.name, addr: b.addr})
	ctx := testContext(t)
	testwait.For(ctx, t, "both endpoints healthy and used", func() bool {
		seen := map[string]bool{}
		for range 4 {
			if s, err := m.call(ctx); err == nil {
				seen[s] = true
			}
		}
		return seen["a"] && seen["b"]
	})

	b.hang.Store(true)
	// Calls until one is stuck on b; they end when the test does.
	callCtx, cancelCalls := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancelCalls()
		wg.Wait()
	}()
	testwait.For(ctx, t, "a call stuck on the hung backend", func() bool {
		wg.Go(func() { _, _ = m.call(callCtx) })
		return b.held.Load() > 0
	})
	state := m.state(b.addr)
	testwait.For(ctx, t, "the hung backend to turn unhealthy", func() bool { return !state.Healthy() })
	m.waitOnly(ctx, t, "a", 20)

	b.hang.Store(false)
	testwait.For(ctx, t, "the backend to be healthy again", state.Healthy)
}

// flipBackend's health Watch pushes each status the test sends on push;
// its Check answers the status last pushed when the Check came, and
// while hold is set it answers only once the test closes release.
type flipBackend struct {
	healthpb.UnimplementedHealthServer
	addr    string
	push    chan healthpb.HealthCheckResponse_ServingStatus
	current atomic.Int32
	hold    atomic.Bool
	release chan struct{}
	checks  atomic.Int64 // Checks come
	held    atomic.Int64 // held Checks answered
}

func (b *flipBackend) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st := healthpb.HealthCheckResponse_ServingStatus(b.current.Load())
	b.checks.Add(1)
	if b.hold.Load() {
		select {
		case <-b.release:
			defer b.held.Add(1)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

func (b *flipBackend) Watch(_ *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	st := healthpb.HealthCheckResponse_ServingStatus(b.current.Load())
	for {
		if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
			return err
		}
		select {
		case st = <-b.push:
			b.current.Store(int32(st))
		case <-stream.Context().Done():
			return nil
		}
	}
}

// TestStaleCheckIgnored: a Check sent while the endpoint was unhealthy,
// answered NOT_SERVING after its Watch had pushed SERVING again, does
// not count: the Watch's newer word stands.
func TestStaleCheckIgnored(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &flipBackend{addr: lis.Addr().String(), push: make(chan healthpb.HealthCheckResponse_ServingStatus), release: make(chan struct{})}
	b.current.Store(int32(healthpb.HealthCheckResponse_SERVING))
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, b)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	var logs syncbuf.Buffer
	table := routing.NewTable()
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{{Addr: b.addr}})
	health := routing.DefaultHealthConfig()
	health.Interval, health.UnhealthyThreshold = 20*time.Millisecond, 1
	mon, err := routing.StartMonitor(routing.MonitorOptions{
		Table: table, Health: health, Load: routing.DefaultLoadConfig(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	eps, _ := table.Endpoints(echoService)
	state := eps[0].State
	ctx := testContext(t)
	testwait.For(ctx, t, "healthy", state.Healthy)

	b.hold.Store(true)
	b.push <- healthpb.HealthCheckResponse_NOT_SERVING
	testwait.For(ctx, t, "unhealthy, and a Check held", func() bool { return !state.Healthy() && b.checks.Load() > 0 })
	b.push <- healthpb.HealthCheckResponse_SERVING
	testwait.For(ctx, t, "healthy again", state.Healthy)
	close(b.release)
	testwait.For(ctx, t, "the held Check answered", func() bool { return b.held.Load() > 0 })
	// The monitor takes the answer a moment later; had it counted, the
	// endpoint would be unhealthy until the next Check 20 ms on.
	time.Sleep(200 * time.Millisecond)
	if n := logs.Count("endpoint unhealthy"); n != 1 || !state.Healthy() {
		t.Errorf("healthy %v, %d reports of turning unhealthy, want healthy and 1:\n%s", state.Healthy(), n, logs.String())
	}
}
