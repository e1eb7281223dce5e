package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/stats"

	sdpb "github.com/quaestor-go/quaestor/proto/servicediscovery"
	"github.com/quaestor-go/quaestor/proxy/internal/frames"
	"github.com/quaestor-go/quaestor/routing"
)

// Options configure a Server.
type Options struct {
	// Config is the proxy section of the configuration. Required: start
	// from DefaultConfig.
	Config Config
	// Router supplies the backend connections. Required.
	Router Router
	// ServerOptions are added to the gRPC server of the proxy's own
	// services (health, reflection, discovery, Register's).
	ServerOptions []grpc.ServerOption
	// StatsHandler, when set, sees the calls of the proxy's own services
	// (as grpc.StatsHandler).
	StatsHandler stats.Handler
	// ObserveCall, when set, is called as every call starts, forwarded
	// or to the proxy's own services, with its method
	// ("/pkg.Service/Method"); the function it returns, when not nil, is
	// called once as the call ends. For metrics.
	ObserveCall func(fullMethod string) func(CallResult)
	// Backends sets keepalive pings on the backend connections (the
	// `backends:` section). Zero: no pings.
	Backends routing.BackendConfig
	// Locator, when set, answers the look-aside discovery RPCs
	// (Quaestor.ServiceDiscovery.ServiceDiscoveryGrpc) on the proxy's port.
	Locator Locator
	// Scope is the registry scope the look-aside discovery serves.
	// Default "default".
	Scope string
	// TracerProvider, when set, spans every forwarded call (see
	// tracing.go). Default: no tracing.
	TracerProvider trace.TracerProvider
	// BeforeDrain, when set, runs when a drain starts, before health
	// turns NOT_SERVING and the listener closes: the place to deregister
	// and to stop what probes backends through ProbeConn (a monitor that
	// watches the proxy's own health would otherwise hear it go
	// NOT_SERVING, and report its own drain as an unhealthy endpoint).
	BeforeDrain func()
	// Register, when set, registers more services of the proxy's own on
	// the server before it starts (they take precedence over forwarding).
	Register func(*grpc.Server)
	// Logger receives the proxy's events. Default: slog.Default().
	Logger *slog.Logger
}

// Server is the proxy: a forwarding engine serving clients, and an
// in-process gRPC server for the proxy's own services.
type Server struct {
	cfg         Config
	beforeDrain func()
	engine      *frames.Engine
	own         *grpc.Server
	ownLis      *localListener
	ownDone     chan struct{}
	startOwn    sync.Once
	health      *healthServer
	conns       *connLimiter
	probes      *probes
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
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		cfg:         opts.Config,
		beforeDrain: opts.BeforeDrain,
		logger:      opts.Logger,
		conns:       newConnLimiter(opts.Config, opts.Logger),
		ownLis:      newLocalListener(),
		ownDone:     make(chan struct{}),
	}
	var tlsConfig *tls.Config
	if opts.Config.TLS.Enabled() {
		var err error
		if tlsConfig, err = opts.Config.TLS.ServerTLS(); err != nil {
			return nil, fmt.Errorf("proxy: proxy.tls: %w", err)
		}
		tlsConfig = tlsConfig.Clone()
		tlsConfig.NextProtos = []string{"h2"}
	}
	serverOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.Config.MaxMessageSize),
		grpc.MaxSendMsgSize(opts.Config.MaxMessageSize),
	}
	serverOpts = append(serverOpts, opts.ServerOptions...)
	if opts.StatsHandler != nil {
		serverOpts = append(serverOpts, grpc.StatsHandler(opts.StatsHandler))
	}
	s.own = grpc.NewServer(serverOpts...)
	if opts.Locator != nil {
		if opts.Scope == "" {
			opts.Scope = "default"
		}
		sdpb.RegisterServiceDiscoveryGrpcServer(s.own, &discoveryServer{scope: opts.Scope, locator: opts.Locator})
	}
	if opts.Register != nil {
		opts.Register(s.own)
	}
	var ownNames []string
	for name := range s.own.GetServiceInfo() {
		ownNames = append(ownNames, name)
	}
	s.health = newHealthServer(ownNames...)
	healthpb.RegisterHealthServer(s.own, s.health)
	refl := &reflectionProxy{router: opts.Router}
	rpb.RegisterServerReflectionServer(s.own, reflectionV1{p: refl})
	rpbalpha.RegisterServerReflectionServer(s.own, reflectionV1Alpha{p: refl})
	refl.describeLocal(s.own)

	router := &callRouter{
		router:    opts.Router,
		own:       make(map[string]bool),
		accessLog: opts.Config.AccessLog,
		observe:   opts.ObserveCall,
		logger:    opts.Logger,
	}
	for name := range s.own.GetServiceInfo() {
		router.own[name] = true
	}
	if opts.TracerProvider != nil {
		router.tracer = opts.TracerProvider.Tracer("github.com/quaestor-go/quaestor/proxy")
	}
	engine, err := frames.New(frames.Config{
		Router:                router,
		Observe:               router.Observe,
		RetryDelay:            router.RetryDelay,
		MaxMessageSize:        opts.Config.MaxMessageSize,
		MaxConcurrentStreams:  uint32(opts.Config.MaxConcurrentStreams),
		MaxHeaderListSize:     uint32(opts.Config.MaxHeaderListSize),
		ConnectionTimeout:     opts.Config.ConnectionTimeout,
		TLS:                   tlsConfig,
		Keepalive:             frames.Keepalive(opts.Config.Keepalive),
		BackendKeepalive:      frames.Keepalive{Time: opts.Backends.KeepaliveTime, Timeout: opts.Backends.KeepaliveTimeout},
		MaxConnectionIdle:     opts.Config.MaxConnectionIdle,
		MaxConnectionAge:      opts.Config.MaxConnectionAge,
		MaxConnectionAgeGrace: opts.Config.MaxConnectionAgeGrace,
		Logger:                opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	s.engine = engine
	router.engine = engine
	router.dialOwn = s.ownLis.dial
	s.probes = newProbes(engine, opts.Config.MaxMessageSize)
	return s, nil
}

// serveOwn starts the in-process server of the proxy's own services.
func (s *Server) serveOwn() {
	s.startOwn.Do(func() {
		go func() {
			defer close(s.ownDone)
			_ = s.own.Serve(s.ownLis)
		}()
	})
}

// stopOwn stops the own services' server, once the engine is done with it.
func (s *Server) stopOwn() {
	s.startOwn.Do(func() { close(s.ownDone) }) // never started
	s.own.Stop()
	<-s.ownDone
}

// Serve accepts connections on lis until the server stops; it returns nil
// after a drain or stop.
func (s *Server) Serve(lis net.Listener) error {
	s.logger.Info("proxy: serving", "addr", lis.Addr().String())
	s.serveOwn()
	if err := s.engine.Serve(s.conns.listener(lis)); err != nil {
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
		s.Stop()
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
	s.logger.Info("proxy: draining", "in_flight", s.engine.InFlight())
	if s.beforeDrain != nil {
		s.beforeDrain()
	}
	s.health.drain()
	err := s.engine.Shutdown(ctx)
	s.stopOwn()
	s.probes.stop()
	if err != nil {
		return fmt.Errorf("proxy: drain timed out: %w", err)
	}
	s.logger.Info("proxy: drained")
	return nil
}

// Stop closes every connection and cancels every call at once.
func (s *Server) Stop() {
	s.health.drain()
	s.engine.Close()
	s.stopOwn()
	s.probes.stop()
}

// InFlight returns the number of calls being forwarded now.
func (s *Server) InFlight() int64 {
	return s.engine.InFlight()
}
