package routing

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Options configure a Router.
type Options struct {
	// Table is where the endpoints come from. Required.
	Table *Table
	// DefaultPolicy balances services without a policy of their own.
	// Default: DefaultPolicy.
	DefaultPolicy string
	// ServicePolicies overrides DefaultPolicy per service name.
	ServicePolicies map[string]string
	// HashKeys names, per service, the metadata key consistent-hash
	// hashes.
	HashKeys map[string]string
	// LoadMaxAge is how old a load report may be and still rank an
	// endpoint. Default 10s.
	LoadMaxAge time.Duration
	// DialOptions are added to every backend connection (window sizes,
	// ...).
	DialOptions []grpc.DialOption
	// ServiceTLS gives, per service, the client TLS of its backend
	// connections. Services without an entry are called in plaintext.
	ServiceTLS map[string]*tls.Config
	// Retry lists the idempotent methods, retried by policy when their
	// backend fails them with UNAVAILABLE (see RetryConfig); calls that
	// never reached a backend are retried whatever it says. Fields left
	// zero take DefaultRetryConfig's values.
	Retry RetryConfig
	// Backend sets keepalive on the backend connections. Zero: no
	// keepalive pings.
	Backend BackendConfig
	// Logger receives connection events. Default: slog.Default().
	Logger *slog.Logger
}

// Router hands out one load-balanced connection per service. The
// connection for a service is made on first use and kept until Close; it
// follows the table, so it never has to be replaced.
type Router struct {
	opts     Options
	resolver *resolverBuilder

	// conns is an immutable map service → connection, replaced under mu
	// when a connection is added, so that Conn takes no lock.
	conns  atomic.Pointer[map[string]*serviceConn]
	mu     sync.Mutex
	closed bool
	// picks serves Pick (pick.go).
	picks pickServices
}

// NewRouter returns a Router over opts.Table.
func NewRouter(opts Options) (*Router, error) {
	if opts.Table == nil {
		return nil, errors.New("routing: NewRouter: Options.Table is required")
	}
	if opts.DefaultPolicy == "" {
		opts.DefaultPolicy = DefaultPolicy
	}
	if err := ValidatePolicy(opts.DefaultPolicy); err != nil {
		return nil, fmt.Errorf("routing: default policy: %w", err)
	}
	for service, policy := range opts.ServicePolicies {
		if err := ValidatePolicy(policy); err != nil {
			return nil, fmt.Errorf("routing: policy of service %q: %w", service, err)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LoadMaxAge == 0 {
		opts.LoadMaxAge = DefaultLoadMaxAge
	}
	opts.Retry = opts.Retry.withDefaults()
	if err := opts.Retry.Validate(); err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	if opts.Backend != (BackendConfig{}) {
		if err := opts.Backend.Validate(); err != nil {
			return nil, fmt.Errorf("routing: %w", err)
		}
	}
	r := &Router{opts: opts}
	r.resolver = &resolverBuilder{table: opts.Table, pushed: r.pushed}
	r.conns.Store(&map[string]*serviceConn{})
	return r, nil
}

// serviceConn is the connection of one service.
type serviceConn struct {
	cc *grpc.ClientConn
	// available and listed are how many endpoints the resolver last gave
	// cc, and of how many the table lists.
	available, listed atomic.Int64
}

// pushed records how many endpoints the resolver of service pushed.
func (r *Router) pushed(service string, available, listed int) {
	if sc, ok := (*r.conns.Load())[service]; ok {
		sc.available.Store(int64(available))
		sc.listed.Store(int64(listed))
	}
}

// Conn returns the connection that balances calls over the endpoints of
// service. It fails with codes.Unimplemented when no source knows the
// service, as a server would answer for a service it does not have.
//
// A service that is known but has no endpoints fails with
// codes.Unavailable, saying so.
func (r *Router) Conn(service string) (grpc.ClientConnInterface, error) {
	sc, ok := (*r.conns.Load())[service]
	if !ok {
		if !r.opts.Table.Has(service) {
			return nil, status.Errorf(codes.Unimplemented, "quaestor: unknown service %q: no instance of it is listed in the config or registered", service)
		}
		var err error
		if sc, err = r.dial(service); err != nil {
			return nil, err
		}
	}
	if sc.available.Load() == 0 {
		if listed := sc.listed.Load(); listed > 0 {
			return nil, status.Errorf(codes.Unavailable, "quaestor: no healthy endpoint of service %q: its %d endpoints fail their health checks or were ejected", service, listed)
		}
		return nil, status.Errorf(codes.Unavailable, "quaestor: service %q has no endpoints: none is listed in the config or registered now", service)
	}
	return sc.cc, nil
}

// HashKey returns the metadata key whose value consistent-hash hashes
// for service (lower case), "" when it has none: the only request
// metadata Pick reads.
func (r *Router) HashKey(service string) string {
	return strings.ToLower(r.opts.HashKeys[service])
}

// ServiceTLS returns the client TLS of the backends of service, nil for
// plaintext.
func (r *Router) ServiceTLS(service string) *tls.Config {
	return r.opts.ServiceTLS[service]
}

// Services returns the services the router can route to, sorted.
func (r *Router) Services() []string {
	return r.opts.Table.Services()
}

func (r *Router) dial(service string) (*serviceConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, status.Error(codes.Unavailable, "quaestor: router is closed")
	}
	conns := *r.conns.Load()
	if sc, ok := conns[service]; ok {
		return sc, nil
	}
	policy := r.opts.DefaultPolicy
	if p, ok := r.opts.ServicePolicies[service]; ok && p != "" {
		policy = p
	}
	serviceConfig, err := serviceConfigJSON(policy, PolicyConfig{HashKey: r.opts.HashKeys[service], LoadMaxAge: r.opts.LoadMaxAge})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "quaestor: policy of service %q: %v", service, err)
	}
	if serviceConfig, err = withRetries(serviceConfig, service, r.opts.Retry); err != nil {
		return nil, status.Errorf(codes.Internal, "quaestor: retries of service %q: %v", service, err)
	}
	dialOpts := append([]grpc.DialOption{
		transportCredentials(r.opts.ServiceTLS[service]),
		grpc.WithResolvers(r.resolver),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithChainUnaryInterceptor(recordUnary),
		grpc.WithChainStreamInterceptor(recordStream),
	}, r.opts.Backend.DialOptions()...)
	dialOpts = append(dialOpts, r.opts.DialOptions...)
	cc, err := grpc.NewClient(Scheme+":///"+service, dialOpts...)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "quaestor: connecting to service %q: %v", service, err)
	}
	sc := &serviceConn{cc: cc}
	// Until the resolver first pushes (on the first call), the table says
	// how many endpoints there are.
	eps, _ := r.opts.Table.Endpoints(service)
	now := time.Now()
	sc.listed.Store(int64(len(eps)))
	for _, ep := range eps {
		if ep.State.Available(now) {
			sc.available.Add(1)
		}
	}
	next := maps.Clone(conns)
	next[service] = sc
	r.conns.Store(&next)
	r.opts.Logger.Debug("routing: new service connection", "service", service, "policy", policy)
	return sc, nil
}

// Close closes every connection, and stops following the table for
// Pick. Calls still running on the connections fail; attempts placed
// with Pick are the caller's to end.
func (r *Router) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.picks.close()
	var errs []error
	for service, sc := range *r.conns.Load() {
		if err := sc.cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("routing: closing connection of %q: %w", service, err))
		}
	}
	r.conns.Store(&map[string]*serviceConn{})
	return errors.Join(errs...)
}

// Locate returns the addresses of the endpoints of service that may get
// calls now, least loaded first (see Table.Ranked); known is false when no
// source lists the service. It answers the look-aside discovery RPCs.
func (r *Router) Locate(service string) (addrs []string, known bool) {
	eps, known := r.opts.Table.Ranked(service, r.opts.LoadMaxAge)
	addrs = make([]string, len(eps))
	for i, ep := range eps {
		addrs[i] = ep.Addr
	}
	return addrs, known
}

// transportCredentials is TLS with cfg, or plaintext when cfg is nil.
func transportCredentials(cfg *tls.Config) grpc.DialOption {
	if cfg == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}
