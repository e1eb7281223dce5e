package loadreport

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/orca"
)

// ServerOptions returns the options that make a server report its load:
// interceptors counting the calls in flight, and ORCA's per-call metrics,
// which put an ORCA load report (see the package doc) in the trailer of
// every call. Pass them to grpc.NewServer; interceptors passed before them
// run outside them.
//
// Calls to the health, reflection and load-reporting services
// (grpc.health.v1.Health, grpc.reflection.v1.ServerReflection and v1alpha,
// Quaestor.LoadReporting.LoadReportingGrpc, xds.service.orca.v3.OpenRcaService)
// are not counted: they are how the server is watched, not its load, and
// their long-lived watch streams would count as load forever.
func (r *Reporter) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// orca's interceptors come first, so they run outside ours and
		// read the metrics after our count has dropped the call.
		orca.CallMetricsServerOption(metricsProvider{r}),
		grpc.ChainUnaryInterceptor(r.unaryInterceptor),
		grpc.ChainStreamInterceptor(r.streamInterceptor),
	}
}

func (r *Reporter) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	// orca writes the trailer only for calls that asked for their
	// recorder: asking is what puts a report on every call.
	orca.CallMetricsRecorderFromContext(ctx)
	if !counted(info.FullMethod) {
		return handler(ctx, req)
	}
	r.begin()
	// Deferred, so that a panic recovered further out is not left counted.
	defer func() { r.end(err) }()
	return handler(ctx, req)
}

func (r *Reporter) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	orca.CallMetricsRecorderFromContext(ss.Context())
	if !counted(info.FullMethod) {
		return handler(srv, ss)
	}
	r.begin()
	defer func() { r.end(err) }()
	return handler(srv, ss)
}

// counted reports whether calls to fullMethod ("/package.Service/Method")
// are load.
func counted(fullMethod string) bool {
	service, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	switch service {
	case "grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
		"grpc.reflection.v1alpha.ServerReflection",
		loadReportingService,
		orcaService:
		return false
	}
	return true
}
