package routing

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
)

// Scheme is the target scheme of the per-service connections:
// "quaestor:///<service>".
const Scheme = "quaestor"

// endpointKey is the attribute key under which a resolved endpoint carries
// its table Endpoint, for balancers that rank endpoints.
type endpointKey struct{}

// EndpointOf returns the table Endpoint that a resolved endpoint or address
// stands for.
func EndpointOf(attrs *attributes.Attributes) (Endpoint, bool) {
	ep, ok := attrs.Value(endpointKey{}).(Endpoint)
	return ep, ok
}

// resolverBuilder builds resolvers that follow the endpoints of one service
// in a Table. It is passed to each ClientConn with grpc.WithResolvers, so
// nothing is registered globally.
type resolverBuilder struct {
	table *Table
	// pushed, when set, is told how many endpoints each push carried, of
	// how many listed.
	pushed func(service string, available, listed int)
}

var _ resolver.Builder = (*resolverBuilder)(nil)

func (b *resolverBuilder) Scheme() string { return Scheme }

func (b *resolverBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	service := target.Endpoint()
	if err := ValidateServiceName(service); err != nil {
		return nil, fmt.Errorf("routing: target %q: %w", target.String(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &tableResolver{table: b.table, service: service, cc: cc, cancel: cancel, pushed: b.pushed}
	changed, unsubscribe := b.table.Subscribe(service)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer unsubscribe()
		r.follow(ctx, changed)
	}()
	return r, nil
}

// tableResolver pushes the endpoints of one service to its ClientConn each
// time the table changes.
type tableResolver struct {
	table   *Table
	service string
	cc      resolver.ClientConn
	cancel  context.CancelFunc
	pushed  func(service string, available, listed int)
	wg      sync.WaitGroup
}

// minPushInterval spaces the resolver's pushes: every push makes the
// balancer rank the endpoints again, and with many endpoints reporting
// their load, changes come faster than rankings need to. Changes in
// between are coalesced into the next push.
const minPushInterval = 50 * time.Millisecond

func (r *tableResolver) follow(ctx context.Context, changed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			r.push()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(minPushInterval):
		}
	}
}

// push gives the balancer the endpoints that may get calls now: healthy
// and not ejected. Every push makes the balancer rank them again.
func (r *tableResolver) push() {
	listed, _ := r.table.Endpoints(r.service)
	now := time.Now()
	eps := slices.DeleteFunc(slices.Clone(listed), func(ep Endpoint) bool { return !ep.State.Available(now) })
	state := resolver.State{
		Endpoints: make([]resolver.Endpoint, 0, len(eps)),
		Addresses: make([]resolver.Address, 0, len(eps)),
	}
	for _, ep := range eps {
		attrs := attributes.New(endpointKey{}, ep)
		// The host is each address's authority: the name a TLS backend's
		// certificate is checked against (not the service name, the
		// connection's own authority).
		host, _, err := net.SplitHostPort(ep.Addr)
		if err != nil {
			host = ep.Addr
		}
		addr := resolver.Address{Addr: ep.Addr, ServerName: host, BalancerAttributes: attrs}
		state.Addresses = append(state.Addresses, addr)
		state.Endpoints = append(state.Endpoints, resolver.Endpoint{
			Addresses:  []resolver.Address{{Addr: ep.Addr, ServerName: host}},
			Attributes: attrs,
		})
	}
	// An empty state is pushed too, so that the balancer drops the
	// connections of endpoints that went away. (The Router fails calls to
	// a service without endpoints before they reach the balancer.)
	_ = r.cc.UpdateState(state)
	if r.pushed != nil {
		r.pushed(r.service, len(eps), len(listed))
	}
}

// ResolveNow is a no-op: the table pushes every change.
func (r *tableResolver) ResolveNow(resolver.ResolveNowOptions) {}

func (r *tableResolver) Close() {
	r.cancel()
	r.wg.Wait()
}
