// Package proxy is quaestor's gRPC front door: a grpc.Server whose unknown
// service handler forwards every call, of any service and any call kind, to
// the connection a [Director] chooses for it.
//
// The forwarding engine never decodes messages: a raw-frame codec hands the
// received buffers to the backend stream as they are. Request metadata goes
// to the backend with x-forwarded-for added; response headers go to the
// client as soon as the backend sends them, trailers and statuses (with
// details) verbatim, trailers-only responses stay trailers-only. The
// client's deadline and cancellation reach the backend.
//
// Besides forwarding, the server answers grpc.health.v1.Health for itself,
// server reflection for every service it routes to (by asking a backend of
// that service, so grpcurl works against the proxy address), and, given a
// [Locator], the look-aside discovery RPCs of
// Quaestor.ServiceDiscovery.ServiceDiscoveryGrpc for clients that want a
// direct connection.
//
// The package knows nothing of registries: it asks a [Router] for "the
// connection for service S".
//
//	srv, err := proxy.NewServer(proxy.Options{Config: cfg, Router: router})
//	if err != nil { ... }
//	lis, err := net.Listen("tcp", cfg.Listen)
//	if err != nil { ... }
//	err = srv.Run(ctx, lis) // serves until ctx is done, then drains
package proxy
