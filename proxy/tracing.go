package proxy

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// traceContext is the propagation both sides use: W3C traceparent and
// tracestate, as clients and backends of other languages send and expect.
var traceContext = propagation.TraceContext{}

// serverTracing spans every call the proxy serves, continuing the trace
// the client started; health checks are not traced (they would drown the
// rest).
func serverTracing(tp trace.TracerProvider) grpc.ServerOption {
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(traceContext),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	))
}

// ClientTracing spans each call the proxy makes to a backend, as a child
// of the proxied call's span, and passes the trace context on to the
// backend in its traceparent header. Add it to the backend connections'
// dial options (routing.Options.DialOptions).
func ClientTracing(tp trace.TracerProvider) grpc.DialOption {
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(traceContext),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	))
}
