package proxy

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"

	"github.com/quaestor-go/quaestor/proxy/internal/frames"
)

// Tracing: each forwarded call gets two spans, as a gRPC server and
// client in one process would make: a server span continuing the trace
// the client started (W3C traceparent and tracestate in the request
// headers, as clients and backends of other languages send and expect),
// and a client span under it, whose context the backend receives in the
// headers instead of the client's. The proxy's own services are not
// traced (health checks would drown the rest).

// traceContext is the propagation both sides use.
var traceContext = propagation.TraceContext{}

// callSpans are a forwarded call's spans: the proxy's server span, child
// of the client's, and its client span, parent of the backend's.
type callSpans struct{ server, client trace.Span }

// startSpans starts a call's spans and puts the client span's context in
// the request headers the backend gets.
func (r *callRouter) startSpans(req *frames.Request, service string) *callSpans {
	ctx := traceContext.Extract(context.Background(), headerCarrier{fields: &req.Header})
	method := strings.TrimPrefix(req.Method, "/")
	_, methodName, _ := strings.Cut(method, "/")
	attrs := trace.WithAttributes(attribute.String("rpc.system", "grpc"),
		attribute.String("rpc.service", service), attribute.String("rpc.method", methodName))
	ctx, server := r.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer), attrs)
	ctx, client := r.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient), attrs)
	traceContext.Inject(ctx, headerCarrier{fields: &req.Header})
	return &callSpans{server: server, client: client}
}

func (s *callSpans) end(st frames.Status) {
	for _, span := range []trace.Span{s.client, s.server} {
		span.SetAttributes(attribute.Int64("rpc.grpc.status_code", int64(st.Code)))
		if st.Code != codes.OK {
			span.SetStatus(otelcodes.Error, st.Message)
		}
		span.End()
	}
}

// headerCarrier lets the trace propagator read and write header fields.
type headerCarrier struct{ fields *[]hpack.HeaderField }

func (c headerCarrier) Get(key string) string {
	for _, f := range *c.fields {
		if f.Name == key {
			return f.Value
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) {
	for i, f := range *c.fields {
		if f.Name == key {
			(*c.fields)[i].Value = value
			return
		}
	}
	*c.fields = append(*c.fields, hpack.HeaderField{Name: key, Value: value})
}

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(*c.fields))
	for i, f := range *c.fields {
		keys[i] = f.Name
	}
	return keys
}
