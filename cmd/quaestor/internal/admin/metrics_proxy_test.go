package admin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

const echoService = "quaestor.example.v1.Echo"

// endSignal passes every event to its handler, then signals each call's
// end: gRPC reports the end after the client has its status, so tests
// wait for it before reading the metrics.
type endSignal struct {
	stats.Handler
	ends chan struct{}
}

func newEndSignal(h stats.Handler) *endSignal {
	return &endSignal{Handler: h, ends: make(chan struct{}, 100)}
}

func (e *endSignal) HandleRPC(ctx context.Context, s stats.RPCStats) {
	e.Handler.HandleRPC(ctx, s)
	if _, ok := s.(*stats.End); ok {
		e.ends <- struct{}{}
	}
}

// wait waits for n calls to end.
func (e *endSignal) wait(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-e.ends:
		case <-ctx.Done():
			t.Fatalf("%d of %d calls ended: %v", i, n, ctx.Err())
		}
	}
}

// serve serves srv on loopback until the test ends and returns its
// address.
func serve(t *testing.T, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return lis.Addr().String()
}

func dialLoopback(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestProxyMetricsCountsCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	metrics := NewProxyMetrics()
	ends := newEndSignal(metrics)
	srv := grpc.NewServer(grpc.StatsHandler(ends))
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{}))
	client := examplev1.NewEchoClient(dialLoopback(t, serve(t, srv)))

	for range 3 {
		if _, err := client.Unary(ctx, &examplev1.EchoRequest{Payload: []byte("hi")}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		_, err := client.Unary(ctx, &examplev1.EchoRequest{ErrorCode: int32(codes.FailedPrecondition), ErrorMessage: "not now"})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("Unary asking for FAILED_PRECONDITION: %v", err)
		}
	}
	stream, err := client.ServerStream(ctx, &examplev1.EchoRequest{ResponseCount: 3})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	ends.wait(ctx, t, 6)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics)
	want := map[string]float64{
		`quaestor_proxy_requests_total{code="OK",method="Unary",service="quaestor.example.v1.Echo"}`:                   3,
		`quaestor_proxy_requests_total{code="FailedPrecondition",method="Unary",service="quaestor.example.v1.Echo"}`:   2,
		`quaestor_proxy_requests_total{code="OK",method="ServerStream",service="quaestor.example.v1.Echo"}`:            1,
		`quaestor_proxy_request_duration_seconds_count{method="Unary",service="quaestor.example.v1.Echo"}`:             5,
		`quaestor_proxy_request_duration_seconds_count{method="ServerStream",service="quaestor.example.v1.Echo"}`:      1,
		`quaestor_proxy_in_flight{service="quaestor.example.v1.Echo"}`:                                                 0,
		`quaestor_proxy_messages_total{direction="received",method="Unary",service="quaestor.example.v1.Echo"}`:        5,
		`quaestor_proxy_messages_total{direction="sent",method="Unary",service="quaestor.example.v1.Echo"}`:            3,
		`quaestor_proxy_messages_total{direction="received",method="ServerStream",service="quaestor.example.v1.Echo"}`: 1,
		`quaestor_proxy_messages_total{direction="sent",method="ServerStream",service="quaestor.example.v1.Echo"}`:     3,
	}
	if diff := cmp.Diff(want, gatherSeries(t, reg, "quaestor_proxy_")); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

func TestProxyMetricsInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	metrics := NewProxyMetrics()
	ends := newEndSignal(metrics)
	srv := grpc.NewServer(grpc.StatsHandler(ends))
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{}))
	client := examplev1.NewEchoClient(dialLoopback(t, serve(t, srv)))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics)
	inFlight := func() float64 {
		return gatherSeries(t, reg, "quaestor_proxy_in_flight")[`quaestor_proxy_in_flight{service="quaestor.example.v1.Echo"}`]
	}

	stream, err := client.BidiStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An answer means the server is in the call.
	if err := stream.Send(&examplev1.EchoRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := inFlight(); got != 1 {
		t.Errorf("in flight during a stream = %v, want 1", got)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v, want EOF", err)
	}
	ends.wait(ctx, t, 1)
	if got := inFlight(); got != 0 {
		t.Errorf("in flight after the stream = %v, want 0", got)
	}
}

// TestProxyMetricsBoundsLabels calls names clients make up: malformed
// ones count as service "unknown", and methods beyond the bound as
// "other".
func TestProxyMetricsBoundsLabels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	metrics := NewProxyMetrics()
	metrics.maxMethods = 2
	ends := newEndSignal(metrics)
	srv := grpc.NewServer(grpc.StatsHandler(ends), grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.NotFound, "nothing here")
	}))
	conn := dialLoopback(t, serve(t, srv))

	methods := []string{
		"/a.S/One", "/a.S/Two", "/a.S/One", // labelled
		"/b.T/Three", "/b.T/Four", // beyond the bound
		"/a.S/", "/a.S/x/y", "/bad\xff.S/M", // malformed
	}
	for _, m := range methods {
		err := conn.Invoke(ctx, m, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("calling %q: %v, want NotFound", m, err)
		}
	}
	ends.wait(ctx, t, len(methods))

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics)
	want := map[string]float64{
		`quaestor_proxy_requests_total{code="NotFound",method="One",service="a.S"}`:         2,
		`quaestor_proxy_requests_total{code="NotFound",method="Two",service="a.S"}`:         1,
		`quaestor_proxy_requests_total{code="NotFound",method="other",service="other"}`:     2,
		`quaestor_proxy_requests_total{code="NotFound",method="unknown",service="unknown"}`: 3,
	}
	if diff := cmp.Diff(want, gatherSeries(t, reg, "quaestor_proxy_requests_total")); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// TestProxyMetricsCodeLabel checks that codes beyond gRPC's own count as
// Unknown.
func TestProxyMetricsCodeLabel(t *testing.T) {
	metrics := NewProxyMetrics()
	ctx := metrics.TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: "/a.S/M"})
	for _, err := range []error{nil, status.Error(codes.Unavailable, "down"), status.Error(codes.Code(42), "odd"), errors.New("plain")} {
		metrics.HandleRPC(ctx, &stats.Begin{})
		metrics.HandleRPC(ctx, &stats.End{Error: err})
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics)
	want := map[string]float64{
		`quaestor_proxy_requests_total{code="OK",method="M",service="a.S"}`:          1,
		`quaestor_proxy_requests_total{code="Unavailable",method="M",service="a.S"}`: 1,
		`quaestor_proxy_requests_total{code="Unknown",method="M",service="a.S"}`:     2,
	}
	if diff := cmp.Diff(want, gatherSeries(t, reg, "quaestor_proxy_requests_total")); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// TestProxyMetricsThroughProxy installs the metrics in a proxy: forwarded
// calls and the proxy's own (health, here) are counted under the service
// they name, and the routing collector sees the same calls placed.
func TestProxyMetricsThroughProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	backend := grpc.NewServer()
	examplev1.RegisterEchoServer(backend, echo.New(echo.Options{}))
	backendAddr := serve(t, backend)

	table := routing.NewTable()
	if err := routing.LoadStatic(table, []routing.ServiceConfig{{Name: echoService, Endpoints: []string{backendAddr}}}); err != nil {
		t.Fatal(err)
	}
	router, err := routing.NewRouter(routing.Options{Table: table, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	metrics := NewProxyMetrics()
	ends := newEndSignal(metrics)
	cfg := proxy.DefaultConfig()
	srv, err := proxy.NewServer(proxy.Options{Config: cfg, Router: router, StatsHandler: ends, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	conn := dialLoopback(t, lis.Addr().String())

	echoClient := examplev1.NewEchoClient(conn)
	for range 2 {
		if _, err := echoClient.Unary(ctx, &examplev1.EchoRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	err = conn.Invoke(ctx, "/nobody.Serves/This", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("calling an unknown service: %v, want Unimplemented", err)
	}
	ends.wait(ctx, t, 4)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics, RoutingCollector(table))
	got := gatherSeries(t, reg, "quaestor_")
	want := map[string]float64{
		`quaestor_proxy_requests_total{code="OK",method="Unary",service="quaestor.example.v1.Echo"}`:   2,
		`quaestor_proxy_requests_total{code="OK",method="Check",service="grpc.health.v1.Health"}`:      1,
		`quaestor_proxy_requests_total{code="Unimplemented",method="This",service="nobody.Serves"}`:    1,
		`quaestor_endpoint_picks_total{addr="` + backendAddr + `",service="quaestor.example.v1.Echo"}`: 2,
		`quaestor_endpoint_in_flight{addr="` + backendAddr + `",service="quaestor.example.v1.Echo"}`:   0,
	}
	for name, value := range want {
		if v, ok := got[name]; !ok || v != value {
			t.Errorf("%s = %v (gathered: %v), want %v", name, v, ok, value)
		}
	}
}

// BenchmarkProxyMetrics is the metrics' cost per unary call: one context
// value, nothing else allocated.
func BenchmarkProxyMetrics(b *testing.B) {
	metrics := NewProxyMetrics()
	info := &stats.RPCTagInfo{FullMethodName: "/quaestor.example.v1.Echo/Unary"}
	begin := &stats.Begin{BeginTime: time.Now()}
	in, out := &stats.InPayload{}, &stats.OutPayload{}
	end := &stats.End{BeginTime: begin.BeginTime, EndTime: begin.BeginTime.Add(time.Millisecond)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx := metrics.TagRPC(context.Background(), info)
			metrics.HandleRPC(ctx, begin)
			metrics.HandleRPC(ctx, in)
			metrics.HandleRPC(ctx, out)
			metrics.HandleRPC(ctx, end)
		}
	})
}
