package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// spanCollector is a real OTLP/gRPC trace receiver on loopback; it keeps
// every span it is sent.
type spanCollector struct {
	collectorpb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (c *spanCollector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (c *spanCollector) collected() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*tracepb.Span(nil), c.spans...)
}

// startSpanCollector serves a spanCollector on loopback until the test
// ends and returns it and its address.
func startSpanCollector(t *testing.T) (*spanCollector, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &spanCollector{}
	srv := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(srv, col)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return col, lis.Addr().String()
}

// TestProxyProcessTraces runs quaestor proxy with tracing on, in front of
// a worker, and calls through it with a client's traceparent: the proxy
// exports a server span under the client's span and a client span under
// its server span, both in the client's trace, by the time it has exited
// after SIGTERM. Its own services (health) are not traced.
func TestProxyProcessTraces(t *testing.T) {
	col, colAddr := startSpanCollector(t)
	worker := startWorker(t)
	listen := freeAddr(t)
	cfg := writeConfig(t, fmt.Sprintf(`
proxy:
  listen: %s
etcd:
  mode: none
admin:
  listen: ""
tracing:
  otlp_endpoint: %s
  insecure: true
services:
  - name: quaestor.example.v1.Echo
    endpoints: [%s]
`, listen, colAddr, worker))
	proxyProc, _ := start(t, "quaestor", "proxy", "-c", cfg)

	ctx := testContext(t)
	cc := dialServingProxy(ctx, t, listen)
	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	callCtx := metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+traceID+"-"+clientSpan+"-01")
	if _, err := examplev1.NewEchoClient(cc).Unary(callCtx, &examplev1.EchoRequest{Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}

	// The proxy flushes its spans as it stops.
	if err := proxyProc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := proxyProc.wait(ctx); err != nil {
		t.Fatalf("quaestor proxy after SIGTERM: %v\n%s", err, proxyProc.stderr)
	}

	spans := col.collected()
	var server, client *tracepb.Span
	for _, s := range spans {
		if got := hex.EncodeToString(s.GetTraceId()); got != traceID {
			t.Errorf("span %q in trace %s, not the client's", s.GetName(), got)
		}
		switch s.GetKind() {
		case tracepb.Span_SPAN_KIND_SERVER:
			server = s
		case tracepb.Span_SPAN_KIND_CLIENT:
			client = s
		}
	}
	if len(spans) != 2 || server == nil || client == nil {
		t.Fatalf("collected %d spans %v, want a server and a client span of the Echo call", len(spans), spans)
	}
	const name = "quaestor.example.v1.Echo/Unary"
	if server.GetName() != name || hex.EncodeToString(server.GetParentSpanId()) != clientSpan {
		t.Errorf("server span %q, parent %x: want %q under the client's span %s", server.GetName(), server.GetParentSpanId(), name, clientSpan)
	}
	if client.GetName() != name || string(client.GetParentSpanId()) != string(server.GetSpanId()) {
		t.Errorf("client span %q, parent %x: want %q under the server span %x", client.GetName(), client.GetParentSpanId(), name, server.GetSpanId())
	}
}
