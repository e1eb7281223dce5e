// Package proxy is quaestor's gRPC front door. It forwards every call, of
// any service and any call kind, to a backend endpoint picked per call, by
// forwarding HTTP/2 frames itself (the engine in proxy/internal/frames):
// it never terminates gRPC with grpc-go on the forwarding path and never
// decodes a message.
//
// For each call the engine decodes the client's header block, asks a
// [Router] to Pick an endpoint (routing.Router.Pick: the same table,
// health, ejection, policies and ORCA accounting as routing's balancers),
// re-encodes the headers for that endpoint's connection, with
// x-forwarded-for added, and passes DATA frames through with one copy.
// The engine keeps one HTTP/2 connection per endpoint, made when a call
// first needs it and taken into use once the backend's SETTINGS arrived.
// routing's Monitor sends the endpoint's health checks and load polls on
// it too, through [Server.ProbeConn] (probe.go).
// Flow control is bridged per stream (a stream's window grows from
// 256 KiB to 4 MiB while the receiving side keeps up), so a slow reader
// slows its own call only. gRPC length prefixes are read to enforce
// Config.MaxMessageSize both ways. Response headers reach the client as
// soon as the backend sends them, trailers and statuses (with details)
// verbatim, and trailers-only responses stay trailers-only. grpc-timeout
// goes to the backend; a backend's CANCEL reset after the deadline
// becomes DEADLINE_EXCEEDED. A client's cancellation resets the backend
// stream.
//
// Retries are the engine's: an attempt that never reached a backend
// (connect failure, REFUSED_STREAM, a GOAWAY whose last stream id is
// below the call's) is sent again, whatever the method; one that failed
// with UNAVAILABLE before response headers is sent again when
// routing.Router.RetryDelay allows it (idempotent methods, max attempts,
// budget, backoff). A retry goes to another endpoint when there is one;
// the request is kept for replay up to 256 KiB, and a call makes 5
// attempts at most. Every attempt's result reaches routing (passive
// health, retry budget).
//
// The client-facing limits (Config.MaxConcurrentStreams,
// MaxHeaderListSize, ConnectionTimeout, Keepalive, MaxConnectionIdle and
// MaxConnectionAge) are the engine's; MaxConnections is counted on the
// listener (limits.go). Options.Backends pings backend connections that
// have calls on them, so that a hung backend's calls fail with
// UNAVAILABLE.
//
// The proxy's own services run on an in-process grpc.Server that the
// engine reaches over in-memory connections, as it reaches a backend:
// grpc.health.v1.Health for the proxy itself, server reflection for every
// service it routes to (by asking a backend of that service through
// Router.Conn, so grpcurl works against the proxy address), given a
// [Locator] the look-aside discovery RPCs of
// Quaestor.ServiceDiscovery.ServiceDiscoveryGrpc, and whatever
// Options.Register adds. Options.ObserveCall sees every call, for
// metrics; Options.TracerProvider spans forwarded calls (tracing.go).
//
// The package knows nothing of registries: it asks a [Router] for an
// endpoint per attempt.
//
//	srv, err := proxy.NewServer(proxy.Options{Config: cfg, Router: router})
//	if err != nil { ... }
//	lis, err := net.Listen("tcp", cfg.Listen)
//	if err != nil { ... }
//	err = srv.Run(ctx, lis) // serves until ctx is done, then drains
package proxy
