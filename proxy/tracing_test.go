package proxy_test

import (
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// TestTraceContinues: a trace a client starts goes on through the proxy
// (a server span and a client span of that trace) into the backend, which
// receives a traceparent of the same trace whose parent is the proxy's
// span. Health checks are not traced.
func TestTraceContinues(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer func() { _ = tp.Shutdown(t.Context()) }()

	be := startBackend(t, "b1")
	table := routing.NewTable()
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{{Addr: be.addr}})
	router := newTestRouter(t, routing.Options{Table: table})
	addr, _ := serveProxy(t, proxy.Options{Config: proxy.DefaultConfig(), Router: router, TracerProvider: tp})
	conn := dial(t, addr)

	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ctx := metadata.AppendToOutgoingContext(testContext(t), "traceparent", "00-"+traceID+"-"+clientSpan+"-01")
	var header metadata.MD
	if _, err := examplev1.NewEchoClient(conn).Unary(ctx, &examplev1.EchoRequest{}, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(testContext(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	// The backend echoes the traceparent it received.
	got := header.Get("traceparent")
	if len(got) != 1 {
		t.Fatalf("backend's traceparent: %q", got)
	}
	parts := strings.Split(got[0], "-")
	if len(parts) != 4 || parts[1] != traceID || parts[2] == clientSpan {
		t.Fatalf("backend's traceparent %q: want trace %s with the proxy's span as parent", got[0], traceID)
	}

	spans := recorder.Ended()
	var server, client bool
	for _, s := range spans {
		if s.SpanContext().TraceID().String() != traceID {
			t.Errorf("span %q in trace %s, not the client's", s.Name(), s.SpanContext().TraceID())
		}
		if strings.Contains(s.Name(), "Health") {
			t.Errorf("health check traced: %q", s.Name())
		}
		switch {
		case s.SpanKind().String() == "server" && s.Parent().SpanID().String() == clientSpan:
			server = true
		case s.SpanKind().String() == "client" && s.SpanContext().SpanID().String() == parts[2]:
			client = true
		}
	}
	if !server || !client {
		t.Errorf("spans %d: server span under the client's %v, client span the backend's parent %v", len(spans), server, client)
	}
}
