package routing_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

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
	waitFor(ctx, t, "both endpoints healthy and used", func() bool {
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
	waitFor(ctx, t, "a call stuck on the hung backend", func() bool {
		wg.Go(func() { _, _ = m.call(callCtx) })
		return b.held.Load() > 0
	})
	state := m.state(b.addr)
	waitFor(ctx, t, "the hung backend to turn unhealthy", func() bool { return !state.Healthy() })
	m.waitOnly(ctx, t, "a", 20)

	b.hang.Store(false)
	waitFor(ctx, t, "the backend to be healthy again", state.Healthy)
}
