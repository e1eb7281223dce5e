package proxy_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// probedBackend answers health checks with its status and echoes, and
// counts the connections it accepts; it keeps the :authority of the
// health checks, and whether any call brought the probes' routing header.
type probedBackend struct {
	addr     string
	status   healthpb.HealthCheckResponse_ServingStatus
	accepted atomic.Int32

	mu         sync.Mutex
	authority  []string
	leakedName bool
}

// countingListener counts what it accepts in its backend.
type countingListener struct {
	net.Listener
	b *probedBackend
}

func (l countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err == nil {
		l.b.accepted.Add(1)
	}
	return nc, err
}

// startProbedBackend serves health (Check and Watch) and Echo.
func startProbedBackend(t *testing.T, st healthpb.HealthCheckResponse_ServingStatus) *probedBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &probedBackend{addr: lis.Addr().String(), status: st}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		b.mu.Lock()
		b.leakedName = b.leakedName || len(md["quaestor-probe-endpoint"]) > 0
		b.mu.Unlock()
		method, _ := grpc.MethodFromServerStream(ss)
		switch method {
		case "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch":
			b.mu.Lock()
			b.authority = append(b.authority, md[":authority"]...)
			b.mu.Unlock()
			var req healthpb.HealthCheckRequest
			if err := ss.RecvMsg(&req); err != nil {
				return err
			}
			if err := ss.SendMsg(&healthpb.HealthCheckResponse{Status: b.status}); err != nil {
				return err
			}
			if method == "/grpc.health.v1.Health/Watch" {
				<-ss.Context().Done()
			}
			return nil
		case "/quaestor.example.v1.Echo/Unary":
			var req examplev1.EchoRequest
			if err := ss.RecvMsg(&req); err != nil {
				return err
			}
			return ss.SendMsg(&examplev1.EchoResponse{Payload: req.Payload})
		}
		return status.Errorf(codes.Unimplemented, "%s", method)
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(countingListener{Listener: lis, b: b})
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return b
}

// TestProbeConn checks the probes' path through the engine: each call
// reaches the endpoint it names, listed or not, healthy or not, on the
// connection forwarded calls use, without its routing header, with the
// endpoint as :authority; probes are not the proxy's calls (metrics,
// InFlight), and a drain does not wait for them.
func TestProbeConn(t *testing.T) {
	ctx := testContext(t)
	listed := startProbedBackend(t, healthpb.HealthCheckResponse_SERVING)
	unlisted := startProbedBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	table := routing.NewTable()
	if err := routing.LoadStatic(table, []routing.ServiceConfig{{Name: echoService, Endpoints: []string{listed.addr}}}); err != nil {
		t.Fatal(err)
	}
	var observed atomic.Int32
	addr, srv := serveProxy(t, proxy.Options{
		Config: proxy.DefaultConfig(),
		Router: newTestRouter(t, routing.Options{Table: table}),
		ObserveCall: func(string) func(proxy.CallResult) {
			observed.Add(1)
			return nil
		},
	})

	if _, err := examplev1.NewEchoClient(dial(t, addr)).Unary(ctx, &examplev1.EchoRequest{Payload: []byte("call")}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		for _, b := range []*probedBackend{listed, unlisted} {
			resp, err := healthpb.NewHealthClient(srv.ProbeConn(echoService, b.addr)).Check(ctx, &healthpb.HealthCheckRequest{Service: echoService})
			if err != nil {
				t.Fatalf("Check of %s: %v", b.addr, err)
			}
			if resp.Status != b.status {
				t.Errorf("Check of %s = %v, want %v: the probe went elsewhere", b.addr, resp.Status, b.status)
			}
		}
	}
	watch, err := healthpb.NewHealthClient(srv.ProbeConn(echoService, listed.addr)).Watch(ctx, &healthpb.HealthCheckRequest{Service: echoService})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v", resp, err)
	}

	if n := listed.accepted.Load(); n != 1 {
		t.Errorf("the backend accepted %d connections for a call and its probes, want 1", n)
	}
	if n := observed.Load(); n != 1 {
		t.Errorf("ObserveCall saw %d calls, want 1: the forwarded call, not the probes", n)
	}
	if n := srv.InFlight(); n != 0 {
		t.Errorf("InFlight with a probe's Watch open = %d, want 0", n)
	}
	for _, b := range []*probedBackend{listed, unlisted} {
		b.mu.Lock()
		if b.leakedName {
			t.Errorf("%s received the probes' routing header", b.addr)
		}
		for _, a := range b.authority {
			if a != b.addr {
				t.Errorf("%s: a probe's :authority %q, want the endpoint's address", b.addr, a)
			}
		}
		b.mu.Unlock()
	}

	drainCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := srv.Drain(drainCtx); err != nil {
		t.Errorf("Drain with a probe's Watch open: %v", err)
	}
	// Ended by the engine's close (UNAVAILABLE) or by the probes'
	// connection's, which follows it (CANCELLED).
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
		t.Errorf("Watch after the drain: %v, want UNAVAILABLE or CANCELLED", err)
	}
}
