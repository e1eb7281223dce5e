package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/admin"
	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/config"
	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/tracing"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
	"github.com/quaestor-go/quaestor/routing/registry"
)

// stack is the set of components one command runs, started in order and
// stopped in reverse.
type stack struct {
	cfg     config.Config
	logger  *slog.Logger
	metrics *prometheus.Registry
	checks  []admin.Check
	stops   []func()

	started time.Time
	// table and disc are set by startRouting, for the status snapshot;
	// processes by the supervisor's start.
	table     *routing.Table
	disc      *registry.Discovery
	processes func() []admin.ProcessStatus
	// reg is the process's one registrar (one lease for all it registers).
	reg *registry.Registrar
	// tracer spans forwarded calls (the proxy's engine starts the spans);
	// nil when tracing is off.
	tracer trace.TracerProvider
}

func newStack(cfg config.Config, stderr io.Writer) *stack {
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &stack{cfg: cfg, logger: cfg.Log.NewLogger(stderr), metrics: metrics, started: time.Now()}
}

// onStop adds a step to run at shutdown; steps run last first.
func (s *stack) onStop(stop func()) { s.stops = append(s.stops, stop) }

// stop runs the shutdown steps.
func (s *stack) stop() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// startEtcd starts the embedded etcd when startEmbedded and the mode is
// embedded, and returns a client to the configured etcd, or nil in mode
// none.
func (s *stack) startEtcd(startEmbedded bool) (*clientv3.Client, error) {
	cfg := s.cfg.Etcd
	if cfg.Mode == registry.ModeNone {
		s.logger.Info("etcd: mode none, static endpoints only")
		return nil, nil
	}
	if cfg.Mode == registry.ModeEmbedded && startEmbedded {
		started := time.Now()
		embedded, err := registry.StartEmbedded(registry.EmbeddedFromConfig(cfg, s.logger))
		if err != nil {
			return nil, err
		}
		s.onStop(embedded.Close)
		s.logger.Info("etcd: embedded member started", "client_url", cfg.ClientURL, "dir", cfg.Dir, "took", time.Since(started).Round(time.Millisecond))
	}
	client, err := registry.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	s.onStop(func() { _ = client.Close() })
	return client, nil
}

// startTracing sets up span export when tracing.otlp_endpoint is set.
func (s *stack) startTracing(ctx context.Context) error {
	tp, shutdown, err := tracing.Setup(ctx, s.cfg.Tracing)
	if err != nil {
		return err
	}
	s.tracer = tp
	s.onStop(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			s.logger.Warn("tracing: flushing spans", "error", err)
		}
	})
	return nil
}

// startRouting fills a table from the static services and, with a client,
// from etcd, and returns a router over it. serveProxy starts checking the
// endpoints' health and load.
func (s *stack) startRouting(client *clientv3.Client) (*routing.Router, error) {
	table := routing.NewTable()
	if err := routing.LoadStatic(table, s.cfg.Services); err != nil {
		return nil, usageError{err}
	}
	s.table = table
	s.metrics.MustRegister(admin.RoutingCollector(table))
	serviceTLS := make(map[string]*tls.Config)
	for _, svc := range s.cfg.Services {
		if svc.TLS.Enabled() {
			cfg, err := svc.TLS.ClientTLS()
			if err != nil {
				return nil, usageError{fmt.Errorf("services: %s: tls: %w", svc.Name, err)}
			}
			serviceTLS[svc.Name] = cfg
		}
	}
	if client != nil {
		allowed, err := registry.ParseNetworks(s.cfg.Registry.AllowedNetworks)
		if err != nil {
			return nil, usageError{err}
		}
		disc, err := registry.StartDiscovery(registry.DiscoveryOptions{
			AllowedNetworks: allowed,
			Client:          client,
			Table:           table,
			Prefix:          s.cfg.Etcd.Prefix,
			Scope:           s.cfg.Registry.Scope,
			RequestTimeout:  s.cfg.Etcd.RequestTimeout,
			Logger:          s.logger,
		})
		if err != nil {
			return nil, err
		}
		s.onStop(disc.Close)
		s.disc = disc
		s.metrics.MustRegister(admin.DiscoveryCollectors(disc)...)
		s.checks = append(s.checks, admin.Check{Name: "etcd discovery", Ready: func() error {
			st := disc.Status()
			switch {
			case st.Ready():
				return nil
			case !st.Synced:
				return fmt.Errorf("not listed yet: %v", st.LastError)
			case !st.Connected:
				return errors.New("etcd unreachable; routing on the last known endpoints")
			default:
				return fmt.Errorf("watch restarting: %v", st.LastError)
			}
		}})
	} else {
		s.checks = append(s.checks, admin.Check{Name: "static routing", Ready: func() error { return nil }})
	}
	// No proxy.ClientTracing in the router's dial options: the proxy's
	// engine forwards calls on connections of its own and spans them
	// itself (proxy.Options.TracerProvider); the router's connections only
	// carry reflection requests.
	policies, hashKeys := s.cfg.ServicePolicies()
	router, err := routing.NewRouter(routing.Options{
		Table:           table,
		DefaultPolicy:   s.cfg.Proxy.Policy,
		ServicePolicies: policies,
		HashKeys:        hashKeys,
		LoadMaxAge:      s.cfg.Load.MaxAge,
		ServiceTLS:      serviceTLS,
		Retry:           s.cfg.Retry,
		Backend:         s.cfg.Backends,
		Logger:          s.logger,
	})
	if err != nil {
		return nil, err
	}
	s.onStop(func() { _ = router.Close() })
	return router, nil
}

// serveAdmin starts the admin server, unless admin.listen is empty.
func (s *stack) serveAdmin() error {
	if s.cfg.Admin.Listen == "" {
		return nil
	}
	srv, err := admin.New(admin.Options{Listen: s.cfg.Admin.Listen, Checks: s.checks, Gatherer: s.metrics, Status: s.snapshot, Pprof: s.cfg.Admin.Pprof, Logger: s.logger})
	if err != nil {
		return err
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(); err != nil {
			s.logger.Error("admin server failed", "error", err)
		}
	}()
	s.onStop(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
	})
	return nil
}

// registrar returns the process's registrar, made on first use: one lease
// for everything this process registers (its supervised workers, the proxy
// itself). It is closed, revoking the lease, when the stack stops.
func (s *stack) registrar(client *clientv3.Client) (*registry.Registrar, error) {
	if s.reg != nil {
		return s.reg, nil
	}
	reg, err := registry.NewRegistrar(registry.RegistrarOptions{
		Client:         client,
		Prefix:         s.cfg.Etcd.Prefix,
		Scope:          s.cfg.Registry.Scope,
		TTL:            s.cfg.Registry.LeaseTTL,
		RequestTimeout: s.cfg.Etcd.RequestTimeout,
		Logger:         s.logger,
	})
	if err != nil {
		return nil, err
	}
	s.metrics.MustRegister(admin.RegistrarCollectors(reg)...)
	s.onStop(func() {
		if err := reg.Close(); err != nil {
			s.logger.Warn("registry: deregistering", "error", err)
			return
		}
		s.logger.Info("registry: lease revoked, every registration of this process removed")
	})
	s.reg = reg
	return reg, nil
}

// serveProxy serves the proxy until ctx is done, then drains it. With an
// etcd client, the proxy registers itself as a ServiceDiscoveryGrpc
// instance, so that clients can find every proxy, and deregisters when the
// drain starts.
func (s *stack) serveProxy(ctx context.Context, router *routing.Router, client *clientv3.Client) error {
	var reg *registry.Registrar
	var self registry.Instance
	if client != nil {
		var err error
		if reg, err = s.registrar(client); err != nil {
			return err
		}
	}
	proxyMetrics := admin.NewProxyMetrics()
	s.metrics.MustRegister(proxyMetrics)
	var monitor *routing.Monitor
	srv, err := proxy.NewServer(proxy.Options{
		ObserveCall:    proxyMetrics.ObserveCall,
		Backends:       s.cfg.Backends,
		Config:         s.cfg.Proxy,
		Router:         router,
		Locator:        router,
		Scope:          s.cfg.Registry.Scope,
		TracerProvider: s.tracer,
		Logger:         s.logger,
		BeforeDrain: func() {
			defer monitor.Close() // its checks go through the proxy
			if reg == nil || self.Addr == "" {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Etcd.RequestTimeout)
			defer cancel()
			if err := reg.Deregister(ctx, self.Service, self.Addr); err != nil {
				s.logger.Warn("proxy: deregistering", "error", err)
			}
		},
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", s.cfg.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("proxy.listen %s: %w", s.cfg.Proxy.Listen, err)
	}
	s.checks = append(s.checks, admin.Check{Name: "proxy", Ready: func() error { return nil }})
	if err := s.serveAdmin(); err != nil {
		lis.Close()
		return err
	}
	if reg != nil {
		self = registry.Instance{Service: proxy.DiscoveryServiceName, Addr: s.cfg.Proxy.AdvertiseAddr(lis.Addr())}
		regCtx, cancel := context.WithCancel(ctx)
		registered := make(chan struct{})
		go func() {
			defer close(registered)
			// Kept and retried by the registrar if etcd is away now.
			if err := reg.Register(regCtx, self); err != nil && regCtx.Err() == nil {
				s.logger.Warn("proxy: registering the look-aside discovery", "error", err)
			}
		}()
		s.onStop(func() {
			cancel()
			<-registered
		})
	}
	// Health checks and load polls go through the proxy's engine, on the
	// connection calls to each endpoint take, with the calls' keepalive: a
	// health Watch hears nothing from a hung instance, only an unanswered
	// ping tells.
	monitor, err = routing.StartMonitor(routing.MonitorOptions{
		Table:   s.table,
		Health:  s.cfg.Health,
		Load:    s.cfg.Load,
		Scope:   s.cfg.Registry.Scope,
		Connect: srv.ProbeConn,
		Logger:  s.logger,
	})
	if err != nil {
		lis.Close()
		srv.Stop()
		return err
	}
	s.onStop(monitor.Close)
	s.logger.Info("quaestor started", "version", buildVersion(), "proxy", lis.Addr().String(),
		"admin", s.cfg.Admin.Listen, "etcd", s.cfg.Etcd.Mode, "static_services", len(s.cfg.Services),
		"gomaxprocs", runtime.GOMAXPROCS(0))
	return srv.Run(ctx, lis)
}

// snapshot is the state /api/status reports.
func (s *stack) snapshot() admin.Snapshot {
	snap := admin.Snapshot{Version: buildVersion(), StartedAt: s.started, Services: []admin.ServiceStatus{}, Processes: []admin.ProcessStatus{}}
	if s.disc != nil {
		st := s.disc.Status()
		snap.Etcd = &admin.EtcdStatus{
			Mode: s.cfg.Etcd.Mode, Ready: st.Ready(), Connected: st.Connected, Watching: st.Watching,
			Revision: st.Revision, Restarts: st.Restarts, Skipped: st.Skipped,
		}
		if st.LastError != nil {
			snap.Etcd.LastError = st.LastError.Error()
		}
	}
	if s.table != nil {
		policies, _ := s.cfg.ServicePolicies()
		now := time.Now()
		for _, name := range s.table.Services() {
			svc := admin.ServiceStatus{Name: name, Policy: s.cfg.Proxy.Policy, Endpoints: []admin.EndpointStatus{}}
			if p, ok := policies[name]; ok {
				svc.Policy = p
			}
			eps, _ := s.table.Endpoints(name)
			for _, ep := range eps {
				st := ep.State
				es := admin.EndpointStatus{
					Addr: ep.Addr, Source: ep.Source, ID: ep.ID,
					Healthy: st.Healthy(), Ejected: st.Ejected(now), InFlight: st.InFlight(), Picks: st.Picks(),
					LoadRate: -1, LatencyMS: float64(st.LatencyEWMA()) / float64(time.Millisecond),
				}
				if r := st.FreshLoad(now, s.cfg.Load.MaxAge); r != nil {
					es.LoadRate, es.Utilization, es.LoadSource = r.LoadRate(), r.Utilization, r.Source
				}
				svc.Endpoints = append(svc.Endpoints, es)
			}
			snap.Services = append(snap.Services, svc)
		}
	}
	if s.processes != nil {
		snap.Processes = s.processes()
	}
	return snap
}
