package routing

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// HealthConfig configures active health checks: grpc.health.v1 Watch per
// endpoint and service, or Check polling for servers without Watch.
type HealthConfig struct {
	// Disabled turns active checks off: every listed endpoint counts as
	// healthy (passive health still ejects failing ones). Default false.
	Disabled bool `koanf:"disabled"`
	// Interval is the time between polled checks, and before a broken
	// Watch is opened again. While calls are in flight on a watched
	// endpoint, a Check is also sent every Interval: a backend that hangs
	// with its connection open changes nothing on its Watch. Default 5s.
	Interval time.Duration `koanf:"interval"`
	// Timeout bounds each polled check. Default 2s.
	Timeout time.Duration `koanf:"timeout"`
	// UnhealthyThreshold is how many failed checks in a row (unreachable,
	// timed out, NOT_SERVING by polling) make an endpoint unhealthy. A
	// NOT_SERVING sent on a Watch counts at once: the server said so.
	// Default 2.
	UnhealthyThreshold int `koanf:"unhealthy_threshold"`
	// HealthyThreshold is how many good checks in a row make an unhealthy
	// endpoint healthy again. Default 1.
	HealthyThreshold int `koanf:"healthy_threshold"`
	// EjectAfter is passive health: how many attempts of proxied calls
	// in a row failing with UNAVAILABLE eject the endpoint (never the
	// last one of a service); 0 turns it off. Default 5.
	EjectAfter int `koanf:"eject_after"`
	// EjectTime is the first ejection's length; it doubles with each
	// ejection in a row, up to MaxEjectTime. Defaults 10s and 5m.
	EjectTime    time.Duration `koanf:"eject_time"`
	MaxEjectTime time.Duration `koanf:"max_eject_time"`
}

// LoadConfig configures load collection.
type LoadConfig struct {
	// Interval is how often endpoints are asked for their load
	// (Quaestor.LoadReporting ReportLoad), and the reporting interval asked
	// of ORCA out-of-band streams. Default 2s.
	Interval time.Duration `koanf:"interval"`
	// MaxAge is how old a report may be and still rank an endpoint; older
	// ones are ignored, as if the endpoint had not reported. Default 10s.
	MaxAge time.Duration `koanf:"max_age"`
}

// DefaultLoadMaxAge is LoadConfig.MaxAge's default.
const DefaultLoadMaxAge = 10 * time.Second

// DefaultHealthConfig returns the health section's defaults.
func DefaultHealthConfig() HealthConfig {
	p := DefaultPassiveHealth()
	return HealthConfig{
		Interval:           5 * time.Second,
		Timeout:            2 * time.Second,
		UnhealthyThreshold: 2,
		HealthyThreshold:   1,
		EjectAfter:         p.Failures,
		EjectTime:          p.EjectTime,
		MaxEjectTime:       p.MaxEjectTime,
	}
}

// DefaultLoadConfig returns the load section's defaults.
func DefaultLoadConfig() LoadConfig {
	return LoadConfig{Interval: 2 * time.Second, MaxAge: DefaultLoadMaxAge}
}

// Passive returns the passive part of the health config.
func (c HealthConfig) Passive() PassiveHealth {
	return PassiveHealth{Failures: c.EjectAfter, EjectTime: c.EjectTime, MaxEjectTime: c.MaxEjectTime}
}

// MonitorOptions configure a Monitor.
type MonitorOptions struct {
	// Table lists the endpoints to watch and receives what is found.
	// Required.
	Table *Table
	// Health and Load configure the checks. Defaults as their Default
	// functions.
	Health HealthConfig
	Load   LoadConfig
	// Scope is sent in ReportLoad requests. Default "default".
	Scope string
	// Connect, when set, returns the connection that carries the checks
	// of one endpoint of a service, instead of a connection of the
	// monitor's own per endpoint (DialOptions and ServiceTLS then go
	// unused); the monitor never closes it. The proxy's
	// (proxy.Server.ProbeConn) sends them on the connection its calls to
	// the endpoint go on, so that a backend has one connection from
	// quaestor, not two.
	Connect func(service, addr string) grpc.ClientConnInterface
	// DialOptions are added to the probe connections.
	DialOptions []grpc.DialOption
	// ServiceTLS gives, per service, the client TLS of its probes, as
	// Router's.
	ServiceTLS map[string]*tls.Config
	// Logger receives health changes. Default slog.Default().
	Logger *slog.Logger
}

// Monitor follows every endpoint in the table: it checks its health and
// collects its load, on a connection of its own per endpoint (or the one
// MonitorOptions.Connect gives), and records both on the endpoint's state.
type Monitor struct {
	opts   MonitorOptions
	mu     sync.Mutex
	probes map[probeKey]*probe
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type probeKey struct{ service, addr string }

// StartMonitor starts following the table.
func StartMonitor(opts MonitorOptions) (*Monitor, error) {
	if opts.Table == nil {
		return nil, errors.New("routing: StartMonitor: Options.Table is required")
	}
	if opts.Health.Interval == 0 {
		opts.Health = DefaultHealthConfig()
	}
	if opts.Load.Interval == 0 {
		opts.Load = DefaultLoadConfig()
	}
	if opts.Scope == "" {
		opts.Scope = "default"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Table.SetPassiveHealth(opts.Health.Passive(), opts.Logger)
	m := &Monitor{opts: opts, probes: make(map[probeKey]*probe)}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	changed, unsubscribe := opts.Table.SubscribeMembers()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer unsubscribe()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				m.sync(ctx)
			}
		}
	}()
	return m, nil
}

// Close stops every probe and waits for them.
func (m *Monitor) Close() {
	m.cancel()
	m.wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, p := range m.probes {
		p.stop()
		delete(m.probes, key)
	}
}

// sync starts a probe for every listed endpoint and stops those of
// endpoints gone.
func (m *Monitor) sync(ctx context.Context) {
	listed := make(map[probeKey]*EndpointState)
	for _, service := range m.opts.Table.Services() {
		eps, _ := m.opts.Table.Endpoints(service)
		for _, ep := range eps {
			listed[probeKey{service, ep.Addr}] = ep.State
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, p := range m.probes {
		if state, ok := listed[key]; !ok || state != p.state {
			p.stop()
			delete(m.probes, key)
		}
	}
	for key, state := range listed {
		if _, ok := m.probes[key]; ok {
			continue
		}
		p, err := m.startProbe(ctx, key, state)
		if err != nil {
			m.opts.Logger.Warn("routing: cannot probe endpoint", "service", key.service, "addr", key.addr, "error", err)
			continue
		}
		m.probes[key] = p
	}
}

// probe checks one endpoint of one service.
type probe struct {
	state *EndpointState
	// own is the probe's own connection, nil on a connection of
	// MonitorOptions.Connect.
	own    *grpc.ClientConn
	cancel context.CancelFunc
	// wg waits for the health checker, load for the load polls.
	wg   sync.WaitGroup
	load *timerLoop
}

func (m *Monitor) startProbe(ctx context.Context, key probeKey, state *EndpointState) (*probe, error) {
	p := &probe{state: state}
	var conn grpc.ClientConnInterface
	if m.opts.Connect != nil {
		conn = m.opts.Connect(key.service, key.addr)
	} else {
		dialOpts := append([]grpc.DialOption{transportCredentials(m.opts.ServiceTLS[key.service])}, m.opts.DialOptions...)
		own, err := grpc.NewClient(key.addr, dialOpts...)
		if err != nil {
			return nil, err
		}
		conn, p.own = own, own
	}
	ctx, p.cancel = context.WithCancel(ctx)
	if !m.opts.Health.Disabled {
		h := &healthChecker{cfg: m.opts.Health, conn: conn, state: state, logger: m.opts.Logger}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			h.run(ctx)
		}()
	}
	l := &loadCollector{cfg: m.opts.Load, scope: m.opts.Scope, conn: conn, state: state, logger: m.opts.Logger}
	p.load = l.start(ctx)
	return p, nil
}

func (p *probe) stop() {
	p.cancel()
	p.wg.Wait()
	p.load.stop()
	if p.own != nil {
		_ = p.own.Close()
	}
}

// phase returns a random time in (0, d]: the first wait of a periodic
// check or poll, so that those of endpoints found together (a thousand
// at a start) do not all fall due at the same moment of every interval,
// a burst for the proxy and for the backends it asks.
func phase(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return 1 + time.Duration(rand.Int64N(int64(d)))
}

// sleep waits d or until ctx ends; it reports whether to go on.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Validate returns an error naming the first key with a bad value.
func (c HealthConfig) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("health.interval: %s, want more than 0", c.Interval)
	case c.Timeout <= 0:
		return fmt.Errorf("health.timeout: %s, want more than 0", c.Timeout)
	case c.UnhealthyThreshold < 1:
		return fmt.Errorf("health.unhealthy_threshold: %d, want 1 or more", c.UnhealthyThreshold)
	case c.HealthyThreshold < 1:
		return fmt.Errorf("health.healthy_threshold: %d, want 1 or more", c.HealthyThreshold)
	case c.EjectAfter < 0:
		return fmt.Errorf("health.eject_after: %d is negative (0 turns ejection off)", c.EjectAfter)
	case c.EjectTime <= 0:
		return fmt.Errorf("health.eject_time: %s, want more than 0", c.EjectTime)
	case c.MaxEjectTime < c.EjectTime:
		return fmt.Errorf("health.max_eject_time: %s is less than health.eject_time %s", c.MaxEjectTime, c.EjectTime)
	}
	return nil
}

// Validate returns an error naming the first key with a bad value.
func (c LoadConfig) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("load.interval: %s, want more than 0", c.Interval)
	case c.MaxAge < c.Interval:
		return fmt.Errorf("load.max_age: %s is less than load.interval %s: every report would be stale", c.MaxAge, c.Interval)
	}
	return nil
}
