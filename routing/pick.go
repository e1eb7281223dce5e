package routing

import (
	"context"
	"crypto/tls"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Placing calls without gRPC connections. A forwarding engine that keeps
// its own backend connections asks Pick for the endpoint of each attempt
// and tells the attempt's end to Picked.Done; it gets the decisions a
// service connection's balancer makes (same table, health, ejection,
// policies, accounting and retry rules) without a grpc.ClientConn.
//
//	p, err := router.Pick(service, method, md, nil)
//	if err != nil { ... } // a status error, to answer the client with
//	code, load := forward(p.Addr, p.TLS)
//	p.Done(code, load)
//	if code == codes.Unavailable && !headersSent {
//		if wait, ok := router.RetryDelay(service, method, attempts); ok { ... }
//	}

// Picked is an endpoint chosen for one attempt of a call.
type Picked struct {
	// Addr is the endpoint's host:port.
	Addr string
	// TLS is the client TLS of the service's backends
	// (Options.ServiceTLS), nil for plaintext.
	TLS *tls.Config

	state *EndpointState
	// start is when the attempt was picked, on the monotonic clock.
	start time.Duration
	// budget is the service's retry budget, nil when it has no retries;
	// retryable is set when the call's method may be retried.
	budget    *retryBudget
	retryable bool
}

// Pick places one attempt of a call of fullMethod ("/pkg.Svc/Method") of
// service on an endpoint, with the service's policy, and counts it on the
// endpoint; the caller must call Done on the result exactly once when the
// attempt ends.
//
// header is the call's request metadata, read by consistent-hash for its
// hash key; it may be nil. skip, when not nil, rules out addresses (those
// the caller could not connect to, or that earlier attempts of the call
// used): when the policy's choice is skipped, the next available endpoint
// (in address order, or priority order for failover) that is not skipped
// gets the attempt, and when every available endpoint is skipped, one of
// them still does.
//
// Errors are status errors worded as Conn's: codes.Unimplemented when no
// source knows service, codes.Unavailable when it has no available
// endpoint, or the router is closed.
//
// Pick takes no lock and allocates nothing, except for consistent-hash
// when the header holds the hash key (the context the policy reads it
// from, and the policy's own lookup), and when the service's endpoints
// changed since the selector was built: the first pick after a change
// (at most one every minRebuildInterval) rebuilds it from the table,
// under the service's rebuild lock, which the other picks do not wait
// for.
func (r *Router) Pick(service, fullMethod string, header metadata.MD, skip func(addr string) bool) (Picked, error) {
	ps := r.picks.lookup(service)
	if ps == nil {
		var err error
		if ps, err = r.newPickService(service); err != nil {
			return Picked{}, err
		}
	}
	now := monoNow()
	snap := ps.current(now)
	if snap.selector == nil {
		return Picked{}, ps.unavailable(snap)
	}
	info := balancer.PickInfo{FullMethodName: fullMethod}
	if ps.hashKey != "" && len(header[ps.hashKey]) > 0 {
		info.Ctx = metadata.NewOutgoingContext(context.Background(), header)
	}
	c := snap.choose(info, skip)
	if c == nil {
		// Every endpoint went down since the selector was built.
		return Picked{}, ps.unavailable(snap)
	}
	c.State.Started()
	return Picked{
		Addr:      c.Addr,
		TLS:       ps.tls,
		state:     c.State,
		start:     now,
		budget:    ps.budget,
		retryable: ps.retry.covers(fullMethod),
	}, nil
}

// Done ends the attempt: it counts the end of its call in flight and its
// duration on the endpoint, code for passive health (UNAVAILABLE is a
// failure, CANCELLED and DEADLINE_EXCEEDED say nothing, anything else is
// a success), code for the service's retry budget (an OK call gives
// tokens back, an idempotent method's UNAVAILABLE attempt takes one), and
// load, when not nil, as the endpoint's load (an ORCA per-call report).
//
// gRPC takes a token only for an attempt it could retry, one that failed
// before response headers; Done cannot tell, and takes one for every
// UNAVAILABLE attempt of an idempotent method.
//
// Call Done once per Pick, and before RetryDelay for the same attempt:
// Picked is a value, so Done cannot tell a second call from the first
// (keeping it idempotent would cost an allocation per pick).
// WantsLoad reports whether the endpoint would take a per-call load
// report now: when its last report, from any source, is older than
// perCallLoadInterval. A busy endpoint's per-call reports differ little
// from call to call; decoding each would cost the proxy more than the
// report is worth.
func (p Picked) WantsLoad() bool {
	if p.state == nil {
		return false
	}
	r := p.state.Load()
	return r == nil || time.Since(r.Time) >= perCallLoadInterval
}

// perCallLoadInterval is how often an endpoint's per-call load reports
// are taken.
const perCallLoadInterval = 100 * time.Millisecond

func (p Picked) Done(code codes.Code, load *v3orcapb.OrcaLoadReport) {
	if p.state == nil {
		return // the zero Picked, of a failed Pick
	}
	p.state.Finished(monoNow() - p.start)
	p.state.recordResult(resultError(code))
	if p.budget != nil {
		switch {
		case code == codes.OK:
			p.budget.succeeded()
		case code == codes.Unavailable && p.retryable:
			p.budget.failed()
		}
	}
	if load != nil {
		p.state.recordORCA(load, "orca-call")
	}
}

// RetryDelay reports whether an attempt of fullMethod of service that
// failed with UNAVAILABLE before the backend sent response headers may be
// sent again, and after how long; attempts is how many attempts the call
// has made so far (1 after the first failed).
//
// It applies Options.Retry as gRPC applies it to service connections
// (RetryConfig): only to the idempotent methods, up to MaxAttempts
// attempts, while the service's retry budget is more than half full,
// after InitialBackoff·2^(attempts-1), at most MaxBackoff, ±20 %. The
// budget counts the attempts ended with Picked.Done, so call RetryDelay
// after the failed attempt's Done. A service Pick never placed a call of
// is not retried.
func (r *Router) RetryDelay(service, fullMethod string, attempts int) (time.Duration, bool) {
	ps := r.picks.lookup(service)
	if ps == nil || !ps.retry.covers(fullMethod) || attempts >= ps.retry.cfg.MaxAttempts || !ps.budget.allows() {
		return 0, false
	}
	random := rand.Float64
	if r.picks.random != nil {
		random = r.picks.random
	}
	return ps.retry.cfg.backoff(attempts, random()), true
}

// pickServices are the services Pick has placed calls of. A Router field;
// Close stops them.
type pickServices struct {
	// services is an immutable map service → state, replaced under the
	// Router's mu when a service is added, so that Pick takes no lock.
	services atomic.Pointer[map[string]*pickService]
	// followers counts the goroutines following the table, one per
	// service.
	followers sync.WaitGroup
	// random returns a number in [0, 1) for the retry backoff's jitter;
	// nil means rand.Float64. Tests set it.
	random func() float64
}

func (s *pickServices) lookup(service string) *pickService {
	if m := s.services.Load(); m != nil {
		return (*m)[service]
	}
	return nil
}

// close stops following the table, and waits for it. The caller holds
// the Router's mu.
func (s *pickServices) close() {
	if m := s.services.Load(); m != nil {
		for _, ps := range *m {
			close(ps.stop)
		}
	}
	s.followers.Wait()
	s.services.Store(nil)
}

// pickService is what Pick knows of one service: its policy and rules,
// and a snapshot of its available endpoints with their selector, rebuilt
// when the table says they changed.
type pickService struct {
	name  string
	table *Table
	// policy builds the selectors; loadAware is set when they read loads
	// when built, so that they are rebuilt when only loads change.
	policy    Policy
	loadAware bool
	// hashKey is the metadata key the policy reads, lower case:
	// consistent-hash's hash key, else empty.
	hashKey string
	// failover orders the fallback by priority.
	failover bool
	tls      *tls.Config
	retry    *retryRules  // nil when no method is retried
	budget   *retryBudget // retry.budget, or nil

	snapshot atomic.Pointer[pickSnapshot]
	// stale is set by the follower when the table changes; the next
	// pick that gets the rebuild lock clears it and rebuilds.
	stale   atomic.Bool
	rebuild sync.Mutex
	stop    chan struct{}
}

// minRebuildInterval spaces the rebuilds of a service's selector, as
// minPushInterval spaces a resolver's pushes: endpoints reporting their
// load change ranks faster than rankings need to follow. An endpoint that
// goes down in between is passed over all the same (choose checks that
// the one chosen is still available).
const minRebuildInterval = minPushInterval

// newPickService starts following service, unless it is unknown.
func (r *Router) newPickService(service string) (*pickService, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, status.Error(codes.Unavailable, "quaestor: router is closed")
	}
	var services map[string]*pickService
	if m := r.picks.services.Load(); m != nil {
		services = *m
	}
	if ps, ok := services[service]; ok {
		return ps, nil
	}
	if !r.opts.Table.Has(service) {
		// Conn's words.
		return nil, status.Errorf(codes.Unimplemented, "quaestor: unknown service %q: no instance of it is listed in the config or registered", service)
	}
	name := r.opts.DefaultPolicy
	if p, ok := r.opts.ServicePolicies[service]; ok && p != "" {
		name = p
	}
	hashKey := r.opts.HashKeys[service]
	policy, err := NewPolicy(name, PolicyConfig{HashKey: hashKey, LoadMaxAge: r.opts.LoadMaxAge})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "quaestor: policy of service %q: %v", service, err)
	}
	ps := &pickService{
		name:      service,
		table:     r.opts.Table,
		policy:    policy,
		loadAware: loadAware[name],
		failover:  name == PolicyFailover,
		tls:       r.opts.ServiceTLS[service],
		retry:     newRetryRules(service, r.opts.Retry),
		stop:      make(chan struct{}),
	}
	if name == PolicyConsistentHash {
		ps.hashKey = strings.ToLower(hashKey)
	}
	if ps.retry != nil {
		ps.budget = ps.retry.budget
	}
	changed, unsubscribe := r.opts.Table.Subscribe(service)
	// The subscription's first value stands for the state the snapshot
	// is built from now; changes from here on mark it stale.
	<-changed
	ps.snapshot.Store(ps.build(nil))
	r.picks.followers.Add(1)
	go func() {
		defer r.picks.followers.Done()
		defer unsubscribe()
		for {
			select {
			case <-ps.stop:
				return
			case <-changed:
				ps.stale.Store(true)
			}
		}
	}()
	next := maps.Clone(services)
	if next == nil {
		next = make(map[string]*pickService)
	}
	next[service] = ps
	r.picks.services.Store(&next)
	return ps, nil
}

// current returns the service's snapshot, rebuilt first when the table
// changed since it was built (at most every minRebuildInterval, unless it
// has no endpoint). Only one pick rebuilds; the others go on with the
// snapshot they have rather than wait.
func (ps *pickService) current(now time.Duration) *pickSnapshot {
	snap := ps.snapshot.Load()
	if !ps.stale.Load() || (snap.selector != nil && now-snap.built < minRebuildInterval) {
		return snap
	}
	if !ps.rebuild.TryLock() {
		return snap
	}
	defer ps.rebuild.Unlock()
	// Cleared before the table is read: a change made while it is read
	// marks it stale again.
	if ps.stale.Swap(false) {
		snap = ps.build(ps.snapshot.Load())
		ps.snapshot.Store(snap)
	}
	return ps.snapshot.Load()
}

// unavailable is the error of a pick that found no available endpoint,
// in Conn's words.
func (ps *pickService) unavailable(snap *pickSnapshot) error {
	if snap.listed > 0 {
		return status.Errorf(codes.Unavailable, "quaestor: no healthy endpoint of service %q: its %d endpoints fail their health checks or were ejected", ps.name, snap.listed)
	}
	return status.Errorf(codes.Unavailable, "quaestor: service %q has no endpoints: none is listed in the config or registered now", ps.name)
}

// pickSnapshot is one state of a service's endpoints, immutable.
type pickSnapshot struct {
	// listed is how many endpoints the table listed.
	listed int
	// candidates are the available ones, sorted as the balancer sorts
	// them (compareEndpoints); selector chooses among them, nil when
	// there is none.
	candidates []Candidate
	selector   Selector
	// order holds the indexes of candidates in the order the fallback
	// tries them; position[i] is candidate i's place in order.
	order, position []int32
	// built is when, on the monotonic clock (monoNow).
	built time.Duration
}

// build makes the snapshot of the table's endpoints now. prev, when not
// nil, is the snapshot it replaces: when the available endpoints are the
// same and the policy does not rank by load, its selector is kept, so
// that a round robin goes on where it was and a hash ring is not built
// again for a change of load.
func (ps *pickService) build(prev *pickSnapshot) *pickSnapshot {
	// Endpoints sorts by compareEndpoints, as pickerBuilder.Build does,
	// and dropping endpoints keeps the order.
	eps, _ := ps.table.Endpoints(ps.name)
	now := time.Now()
	snap := &pickSnapshot{listed: len(eps), built: monoNow()}
	candidates := make([]Candidate, 0, len(eps))
	for _, ep := range eps {
		if ep.State != nil && ep.State.Available(now) {
			candidates = append(candidates, Candidate{Endpoint: ep})
		}
	}
	if len(candidates) == 0 {
		return snap
	}
	if prev != nil && prev.selector != nil && !ps.loadAware && sameCandidates(prev.candidates, candidates) {
		snap.candidates, snap.selector, snap.order, snap.position = prev.candidates, prev.selector, prev.order, prev.position
		return snap
	}
	snap.candidates = candidates
	snap.selector = ps.policy.NewSelector(candidates)
	snap.order = make([]int32, len(candidates))
	for i := range snap.order {
		snap.order[i] = int32(i)
	}
	if ps.failover {
		slices.SortFunc(snap.order, func(a, b int32) int {
			return compareFailoverRanks(failoverRankOf(&candidates[a]), failoverRankOf(&candidates[b]))
		})
	}
	snap.position = make([]int32, len(candidates))
	for place, i := range snap.order {
		snap.position[i] = int32(place)
	}
	return snap
}

// sameCandidates reports whether a and b hold the same endpoints, with
// the same states and metadata.
func sameCandidates(a, b []Candidate) bool {
	return slices.EqualFunc(a, b, func(x, y Candidate) bool {
		return x.Addr == y.Addr && x.State == y.State && x.Source == y.Source && x.ID == y.ID && maps.Equal(x.Metadata, y.Metadata)
	})
}

// choose returns the candidate for one attempt: the selector's choice
// when it is still available and not skipped, else the fallback's; nil
// when none is available any more.
func (s *pickSnapshot) choose(info balancer.PickInfo, skip func(string) bool) *Candidate {
	c := s.selector.Select(info)
	if availableNow(c.State) && (skip == nil || !skip(c.Addr)) {
		return c
	}
	return s.fallback(c, skip)
}

// fallback tries the candidates in order from the one after c, and
// returns the first available one that is not skipped; else c, or the
// first of the others, that is available although skipped; else nil.
func (s *pickSnapshot) fallback(c *Candidate, skip func(string) bool) *Candidate {
	start := 0
	for i := range s.candidates {
		if &s.candidates[i] == c {
			start = int(s.position[i])
			break
		}
	}
	var skipped *Candidate
	if availableNow(c.State) {
		skipped = c
	}
	n := len(s.order)
	for step := 1; step <= n; step++ {
		other := &s.candidates[s.order[(start+step)%n]]
		if other == c || !availableNow(other.State) {
			continue
		}
		if skip == nil || !skip(other.Addr) {
			return other
		}
		if skipped == nil {
			skipped = other
		}
	}
	return skipped
}

// resultErrors holds a status error per code, for passive health, so
// that Done allocates none. Never written after initialization.
var resultErrors = func() (errs [codes.Unauthenticated + 1]error) {
	for code := range errs {
		if codes.Code(code) != codes.OK {
			errs[code] = status.Error(codes.Code(code), "quaestor: attempt result")
		}
	}
	return errs
}()

// resultError is the error recordResult counts for code: nil for OK.
func resultError(code codes.Code) error {
	if int(code) < len(resultErrors) {
		return resultErrors[code]
	}
	return status.Error(code, "quaestor: attempt result")
}

// availableNow is s.Available(time.Now()), reading the wall clock only for
// an endpoint that has been ejected: a pick reads the clock once, on the
// monotonic clock alone, for half the cost of time.Now.
func availableNow(s *EndpointState) bool {
	if !s.Healthy() {
		return false
	}
	until := s.ejectedUntil.Load()
	return until == 0 || time.Now().UnixNano() >= until
}

// monoEpoch is the origin of monoNow. Never written after initialization.
var monoEpoch = time.Now()

// monoNow reads the monotonic clock alone (time.Since of a time with a
// monotonic reading does), as a duration since monoEpoch.
func monoNow() time.Duration { return time.Since(monoEpoch) }
