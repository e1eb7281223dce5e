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
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

const echoService = "quaestor.example.v1.Echo"

// serve serves srv on loopback until the test ends and returns its
// address.
func serve(t testing.TB, srv *grpc.Server) string {
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

func dialLoopback(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// startMetricsProxy serves a proxy.Server in front of an Echo backend,
// with opts (ObserveCall, typically), until tb ends, and returns the
// proxy's address and the backend's.
func startMetricsProxy(tb testing.TB, table *routing.Table, opts proxy.Options) (proxyAddr, backendAddr string) {
	tb.Helper()
	backend := grpc.NewServer()
	examplev1.RegisterEchoServer(backend, echo.New(echo.Options{}))
	return startProxyInFront(tb, table, opts, backend, echoService)
}

// startProxyInFront serves backend on loopback, lists it in table as the
// one endpoint of services, and serves a proxy.Server with opts over
// table until tb ends. It returns the proxy's address and the backend's.
func startProxyInFront(tb testing.TB, table *routing.Table, opts proxy.Options, backend *grpc.Server, services ...string) (proxyAddr, backendAddr string) {
	tb.Helper()
	backendAddr = serve(tb, backend)
	var static []routing.ServiceConfig
	for _, name := range services {
		static = append(static, routing.ServiceConfig{Name: name, Endpoints: []string{backendAddr}})
	}
	if err := routing.LoadStatic(table, static); err != nil {
		tb.Fatal(err)
	}
	router, err := routing.NewRouter(routing.Options{Table: table, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = router.Close() })
	opts.Config = proxy.DefaultConfig()
	opts.Router = router
	opts.Logger = slog.New(slog.DiscardHandler)
	srv, err := proxy.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	tb.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			tb.Error(err)
		}
	})
	return lis.Addr().String(), backendAddr
}

// TestProxyMetricsCountsCalls counts calls forwarded to a backend: per
// status code, their durations and the messages each way.
func TestProxyMetricsCountsCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	metrics := NewProxyMetrics()
	proxyAddr, _ := startMetricsProxy(t, routing.NewTable(), proxy.Options{ObserveCall: metrics.ObserveCall})
	client := examplev1.NewEchoClient(dialLoopback(t, proxyAddr))

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
	upload, err := client.ClientStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := upload.Send(&examplev1.EchoRequest{Payload: []byte("part")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := upload.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	// The proxy counts a call before its client can see its status: the
	// client has every status, so every call is counted.

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics)
	want := map[string]float64{
		`quaestor_proxy_requests_total{code="OK",method="Unary",service="quaestor.example.v1.Echo"}`:                   3,
		`quaestor_proxy_requests_total{code="FailedPrecondition",method="Unary",service="quaestor.example.v1.Echo"}`:   2,
		`quaestor_proxy_requests_total{code="OK",method="ServerStream",service="quaestor.example.v1.Echo"}`:            1,
		`quaestor_proxy_requests_total{code="OK",method="ClientStream",service="quaestor.example.v1.Echo"}`:            1,
		`quaestor_proxy_request_duration_seconds_count{method="Unary",service="quaestor.example.v1.Echo"}`:             5,
		`quaestor_proxy_request_duration_seconds_count{method="ServerStream",service="quaestor.example.v1.Echo"}`:      1,
		`quaestor_proxy_request_duration_seconds_count{method="ClientStream",service="quaestor.example.v1.Echo"}`:      1,
		`quaestor_proxy_in_flight{service="quaestor.example.v1.Echo"}`:                                                 0,
		`quaestor_proxy_messages_total{direction="received",method="Unary",service="quaestor.example.v1.Echo"}`:        5,
		`quaestor_proxy_messages_total{direction="sent",method="Unary",service="quaestor.example.v1.Echo"}`:            3,
		`quaestor_proxy_messages_total{direction="received",method="ServerStream",service="quaestor.example.v1.Echo"}`: 1,
		`quaestor_proxy_messages_total{direction="sent",method="ServerStream",service="quaestor.example.v1.Echo"}`:     3,
		`quaestor_proxy_messages_total{direction="received",method="ClientStream",service="quaestor.example.v1.Echo"}`: 4,
		`quaestor_proxy_messages_total{direction="sent",method="ClientStream",service="quaestor.example.v1.Echo"}`:     1,
	}
	if diff := cmp.Diff(want, gatherSeries(t, reg, "quaestor_proxy_")); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// TestProxyMetricsInFlight holds a forwarded stream open: it is in flight
// until its client has its status.
func TestProxyMetricsInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	metrics := NewProxyMetrics()
	proxyAddr, _ := startMetricsProxy(t, routing.NewTable(), proxy.Options{ObserveCall: metrics.ObserveCall})
	client := examplev1.NewEchoClient(dialLoopback(t, proxyAddr))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics)
	inFlight := func() float64 {
		return gatherSeries(t, reg, "quaestor_proxy_in_flight")[`quaestor_proxy_in_flight{service="quaestor.example.v1.Echo"}`]
	}

	stream, err := client.BidiStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An answer means the proxy has the call.
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
	if got := inFlight(); got != 0 {
		t.Errorf("in flight after the stream = %v, want 0", got)
	}
}

// TestProxyMetricsBoundsLabels calls names clients make up: malformed
// ones count as service "unknown", and methods beyond the bound as
// "other". The proxy answers all of them itself, UNIMPLEMENTED.
func TestProxyMetricsBoundsLabels(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	metrics := NewProxyMetrics()
	metrics.maxMethods = 2
	proxyAddr, _ := startMetricsProxy(t, routing.NewTable(), proxy.Options{ObserveCall: metrics.ObserveCall})
	conn := dialLoopback(t, proxyAddr)

	methods := []string{
		"/a.S/One", "/a.S/Two", "/a.S/One", // labelled
		"/b.T/Three", "/b.T/Four", // beyond the bound
		"/a.S/", "/a.S/x/y", "/bad\xff.S/M", // malformed
	}
	for _, m := range methods {
		err := conn.Invoke(ctx, m, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("calling %q: %v, want Unimplemented", m, err)
		}
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics)
	want := map[string]float64{
		`quaestor_proxy_requests_total{code="Unimplemented",method="One",service="a.S"}`:         2,
		`quaestor_proxy_requests_total{code="Unimplemented",method="Two",service="a.S"}`:         1,
		`quaestor_proxy_requests_total{code="Unimplemented",method="other",service="other"}`:     2,
		`quaestor_proxy_requests_total{code="Unimplemented",method="unknown",service="unknown"}`: 3,
	}
	if diff := cmp.Diff(want, gatherSeries(t, reg, "quaestor_proxy_requests_total")); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// TestProxyMetricsCodeLabel forwards calls to a backend that ends each
// with the status the client asks for: the client gets it verbatim, and
// the code label is its code, with codes beyond gRPC's own counted as
// Unknown.
func TestProxyMetricsCodeLabel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
	}{
		{name: "ok", err: nil, wantCode: codes.OK},
		{name: "unavailable", err: status.Error(codes.Unavailable, "down"), wantCode: codes.Unavailable},
		{name: "beyond grpc", err: status.Error(codes.Code(42), "odd"), wantCode: codes.Code(42)},
		{name: "no status", err: errors.New("plain"), wantCode: codes.Unknown},
	}
	backend := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		for _, tt := range tests {
			if len(md["case"]) == 1 && md["case"][0] == tt.name {
				return tt.err
			}
		}
		return status.Error(codes.InvalidArgument, "no such case")
	}))
	metrics := NewProxyMetrics()
	proxyAddr, _ := startProxyInFront(t, routing.NewTable(), proxy.Options{ObserveCall: metrics.ObserveCall}, backend, "a.S")
	conn := dialLoopback(t, proxyAddr)
	for _, tt := range tests {
		callCtx := metadata.AppendToOutgoingContext(ctx, "case", tt.name)
		stream, err := conn.NewStream(callCtx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/a.S/M")
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		err = stream.RecvMsg(&emptypb.Empty{})
		if err == nil {
			t.Fatalf("%s: stream sent a message, want none", tt.name)
		}
		if tt.wantCode == codes.OK && !errors.Is(err, io.EOF) || tt.wantCode != codes.OK && status.Code(err) != tt.wantCode {
			t.Errorf("%s: stream ended with %v, want code %v", tt.name, err, tt.wantCode)
		}
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

// TestProxyMetricsThroughProxy checks that forwarded calls and the
// proxy's own (health, here) are counted under the service they name, and
// that the routing collector sees the same calls placed.
func TestProxyMetricsThroughProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	metrics := NewProxyMetrics()
	table := routing.NewTable()
	proxyAddr, backendAddr := startMetricsProxy(t, table, proxy.Options{ObserveCall: metrics.ObserveCall})
	conn := dialLoopback(t, proxyAddr)

	echoClient := examplev1.NewEchoClient(conn)
	for range 2 {
		if _, err := echoClient.Unary(ctx, &examplev1.EchoRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	err := conn.Invoke(ctx, "/nobody.Serves/This", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("calling an unknown service: %v, want Unimplemented", err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics, RoutingCollector(table))
	got := gatherSeries(t, reg, "quaestor_")
	want := map[string]float64{
		`quaestor_proxy_requests_total{code="OK",method="Unary",service="quaestor.example.v1.Echo"}`:            2,
		`quaestor_proxy_requests_total{code="OK",method="Check",service="grpc.health.v1.Health"}`:               1,
		`quaestor_proxy_requests_total{code="Unimplemented",method="This",service="nobody.Serves"}`:             1,
		`quaestor_proxy_messages_total{direction="received",method="Unary",service="quaestor.example.v1.Echo"}`: 2,
		`quaestor_proxy_messages_total{direction="sent",method="Unary",service="quaestor.example.v1.Echo"}`:     2,
		`quaestor_proxy_messages_total{direction="received",method="Check",service="grpc.health.v1.Health"}`:    1,
		`quaestor_proxy_messages_total{direction="sent",method="Check",service="grpc.health.v1.Health"}`:        1,
		`quaestor_proxy_in_flight{service="quaestor.example.v1.Echo"}`:                                          0,
		`quaestor_endpoint_picks_total{addr="` + backendAddr + `",service="quaestor.example.v1.Echo"}`:          2,
		`quaestor_endpoint_in_flight{addr="` + backendAddr + `",service="quaestor.example.v1.Echo"}`:            0,
	}
	for name, value := range want {
		if v, ok := got[name]; !ok || v != value {
			t.Errorf("%s = %v (gathered: %v), want %v", name, v, ok, value)
		}
	}
}

// BenchmarkProxyMetrics is ObserveCall's own cost per call, without a
// proxy: the series of a known method are looked up without a lock, and
// nothing is allocated.
func BenchmarkProxyMetrics(b *testing.B) {
	metrics := NewProxyMetrics()
	res := proxy.CallResult{Code: codes.OK, Duration: time.Millisecond, Received: 1, Sent: 1}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			metrics.ObserveCall("/quaestor.example.v1.Echo/Unary")(res)
		}
	})
}

// BenchmarkProxyMetricsThroughProxy is what the metrics cost per unary
// call forwarded by a real proxy.Server, against the same proxy without
// them: compare allocs/op and B/op (the CPU figures count the client,
// proxy and backend together and are noisy).
//
//	go test -run '^$' -bench ProxyMetricsThroughProxy -benchmem ./cmd/quaestor/internal/admin/
func BenchmarkProxyMetricsThroughProxy(b *testing.B) {
	for _, v := range []struct {
		name    string
		install func(*proxy.Options)
	}{
		{"none", func(*proxy.Options) {}},
		{"observecall", func(o *proxy.Options) { o.ObserveCall = NewProxyMetrics().ObserveCall }},
	} {
		b.Run(v.name, func(b *testing.B) {
			var opts proxy.Options
			v.install(&opts)
			addr, _ := startMetricsProxy(b, routing.NewTable(), opts)
			client := examplev1.NewEchoClient(dialLoopback(b, addr))
			ctx := context.Background()
			req := &examplev1.EchoRequest{Payload: []byte("hello")}
			if _, err := client.Unary(ctx, req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Unary(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
