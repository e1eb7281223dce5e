package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip-compressed calls
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/stats"

	sdpb "github.com/quaestor-go/quaestor/proto/servicediscovery"
)

// Options configure a Server.
type Options struct {
	// Config is the proxy section of the configuration. Required: start
	// from DefaultConfig.
	Config Config
	// Router supplies the backend connections. Required.
	Router Router
	// Director overrides how calls are mapped to connections. Default:
	// RouterDirector(Router).
	Director Director
	// ServerOptions are added to the gRPC server's (credentials, ...).
	ServerOptions []grpc.ServerOption
	// StatsHandler, when set, sees every call the server handles (as
	// grpc.StatsHandler): forwarded or the proxy's own, for metrics.
	StatsHandler stats.Handler
	// Locator, when set, answers the look-aside discovery RPCs
	// (Quaestor.ServiceDiscovery.ServiceDiscoveryGrpc) on the proxy's port.
	Locator Locator
	// Scope is the registry scope the look-aside discovery serves.
	// Default "default".
	Scope string
	// TracerProvider, when set, spans every proxied call (see
	// ClientTracing for the backend side). Default: no tracing.
	TracerProvider trace.TracerProvider
	// BeforeDrain, when set, runs when a drain starts, after health turns
	// NOT_SERVING and before the listener closes: the place to deregister.
	BeforeDrain func()
	// Register, when set, registers more services of the proxy's own on
	// the server before it starts (they take precedence over forwarding).
	Register func(*grpc.Server)
	// Logger receives the proxy's events. Default: slog.Default().
	Logger *slog.Logger
}

// Server is the proxy's gRPC server.
type Server struct {
	cfg         Config
	beforeDrain func()
	grpc        *grpc.Server
	health      *healthServer
	forwarder   *forwarder
	conns       *connLimiter
	logger      *slog.Logger
}

// NewServer builds the server; it serves once Serve or Run is called.
func NewServer(opts Options) (*Server, error) {
	if opts.Router == nil {
		return nil, errors.New("proxy: NewServer: Options.Router is required")
	}
	if err := opts.Config.Validate(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if opts.Director == nil {
		opts.Director = RouterDirector(opts.Router)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		cfg:         opts.Config,
		beforeDrain: opts.BeforeDrain,
		logger:      opts.Logger,
		conns:       newConnLimiter(opts.Config, opts.Logger),
		forwarder: &forwarder{
			director:       opts.Director,
			codec:          newFrameCodec(),
			maxMessageSize: opts.Config.MaxMessageSize,
			accessLog:      opts.Config.AccessLog,
			logger:         opts.Logger,
		},
	}
	var base []grpc.ServerOption
	if opts.Config.TLS.Enabled() {
		tlsConfig, err := opts.Config.TLS.ServerTLS()
		if err != nil {
			return nil, fmt.Errorf("proxy: proxy.tls: %w", err)
		}
		base = append(base, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	if opts.TracerProvider != nil {
		base = append(base, serverTracing(opts.TracerProvider))
	}
	serverOpts := append(base, []grpc.ServerOption{
		grpc.ForceServerCodecV2(s.forwarder.codec),
		grpc.UnknownServiceHandler(s.forwarder.handle),
		grpc.MaxRecvMsgSize(opts.Config.MaxMessageSize),
		grpc.MaxSendMsgSize(opts.Config.MaxMessageSize),
	}...)
	serverOpts = append(serverOpts, opts.Config.limitOptions()...)
	serverOpts = append(serverOpts, opts.ServerOptions...)
	if opts.StatsHandler != nil {
		serverOpts = append(serverOpts, grpc.StatsHandler(opts.StatsHandler))
	}
	s.grpc = grpc.NewServer(serverOpts...)
	if opts.Locator != nil {
		if opts.Scope == "" {
			opts.Scope = "default"
		}
		sdpb.RegisterServiceDiscoveryGrpcServer(s.grpc, &discoveryServer{scope: opts.Scope, locator: opts.Locator})
	}
	if opts.Register != nil {
		opts.Register(s.grpc)
	}
	var own []string
	for name := range s.grpc.GetServiceInfo() {
		own = append(own, name)
	}
	s.health = newHealthServer(own...)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	refl := &reflectionProxy{router: opts.Router}
	rpb.RegisterServerReflectionServer(s.grpc, reflectionV1{p: refl})
	rpbalpha.RegisterServerReflectionServer(s.grpc, reflectionV1Alpha{p: refl})
	refl.describeLocal(s.grpc)
	return s, nil
}

// Serve accepts connections on lis until the server stops; it returns nil
// after a drain or stop.
func (s *Server) Serve(lis net.Listener) error {
	s.logger.Info("proxy: serving", "addr", lis.Addr().String())
	if err := s.grpc.Serve(s.conns.listener(lis)); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("proxy: serving on %s: %w", lis.Addr(), err)
	}
	return nil
}

// Run serves on lis until ctx is done, then drains within
// Config.DrainTimeout. It returns the serving error, or the drain's.
func (s *Server) Run(ctx context.Context, lis net.Listener) error {
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	select {
	case err := <-served:
		s.grpc.Stop()
		return err
	case <-ctx.Done():
	}
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	drainErr := s.Drain(drainCtx)
	return errors.Join(<-served, drainErr)
}

// Drain stops the server gracefully: health turns NOT_SERVING, no new
// connections or calls are accepted, and calls in flight run to their end
// until ctx is done, when those left are cancelled. It returns an error
// saying how many calls were cut short, if any were.
func (s *Server) Drain(ctx context.Context) error {
	s.health.drain()
	s.logger.Info("proxy: draining", "in_flight", s.forwarder.inFlight.Load())
	if s.beforeDrain != nil {
		s.beforeDrain()
	}
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
		s.logger.Info("proxy: drained")
		return nil
	case <-ctx.Done():
	}
	cut := s.forwarder.inFlight.Load()
	s.grpc.Stop()
	<-stopped
	return fmt.Errorf("proxy: drain timed out: %d calls in flight were cancelled", cut)
}

// Stop closes every connection and cancels every call at once.
func (s *Server) Stop() {
	s.health.drain()
	s.grpc.Stop()
}

// InFlight returns the number of calls being forwarded now.
func (s *Server) InFlight() int64 {
	return s.forwarder.inFlight.Load()
}
