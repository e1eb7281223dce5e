package routing

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// Pick never connects: the endpoints of these tests are addresses on
// loopback that nothing needs to listen on.

const testService = "test.Service"

// pickEndpoints returns n static endpoints, 127.0.0.1:1 to :n.
func pickEndpoints(n int) []Endpoint {
	eps := make([]Endpoint, n)
	for i := range eps {
		eps[i].Addr = "127.0.0.1:" + strconv.Itoa(i+1)
	}
	return eps
}

// newPickTable returns a table listing eps for testService.
func newPickTable(eps []Endpoint) *Table {
	table := NewTable()
	table.Update(testService, SourceStatic, eps)
	return table
}

func newPickRouter(t testing.TB, table *Table, opts Options) *Router {
	t.Helper()
	opts.Table = table
	r, err := NewRouter(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// stateOf returns the live state of addr in testService.
func stateOf(t *testing.T, table *Table, addr string) *EndpointState {
	t.Helper()
	eps, _ := table.Endpoints(testService)
	for _, ep := range eps {
		if ep.Addr == addr {
			return ep.State
		}
	}
	t.Fatalf("%s is not listed", addr)
	return nil
}

// pickOne picks for "/test.Service/Call" and ends the attempt at once
// with OK.
func pickOne(t *testing.T, r *Router, header metadata.MD, skip func(string) bool) string {
	t.Helper()
	p, err := r.Pick(testService, "/"+testService+"/Call", header, skip)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	p.Done(codes.OK, nil)
	return p.Addr
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPickErrorsAsConn checks that Pick fails as Conn does, code and
// message, for a service no source knows, one without endpoints, and one
// whose endpoints are all down.
func TestPickErrorsAsConn(t *testing.T) {
	table := NewTable()
	table.Update("test.Empty", SourceStatic, nil)
	table.Update("test.Down", SourceStatic, pickEndpoints(2))
	eps, _ := table.Endpoints("test.Down")
	for _, ep := range eps {
		ep.State.SetHealthy(false)
	}
	tests := []struct {
		name, service string
		want          codes.Code
	}{
		{name: "unknown", service: "nosuch.Svc", want: codes.Unimplemented},
		{name: "no endpoints", service: "test.Empty", want: codes.Unavailable},
		{name: "all unhealthy", service: "test.Down", want: codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newPickRouter(t, table, Options{}).Pick(tt.service, "/"+tt.service+"/Call", nil, nil)
			_, connErr := newPickRouter(t, table, Options{}).Conn(tt.service)
			if status.Code(err) != tt.want {
				t.Fatalf("Pick: %v, want code %v", err, tt.want)
			}
			if status.Code(err) != status.Code(connErr) || err.Error() != connErr.Error() {
				t.Errorf("Pick: %v\nConn: %v", err, connErr)
			}
		})
	}
}

// TestPickFollowsHealth checks that an endpoint that fails its health
// checks gets no attempt from then on, and gets attempts again once it
// passes them.
func TestPickFollowsHealth(t *testing.T) {
	ctx := testContext(t)
	table := newPickTable(pickEndpoints(3))
	r := newPickRouter(t, table, Options{DefaultPolicy: PolicyRoundRobin})
	pickOne(t, r, nil, nil)
	down := stateOf(t, table, "127.0.0.1:2")

	down.SetHealthy(false)
	for range 30 {
		if addr := pickOne(t, r, nil, nil); addr == down.Addr() {
			t.Fatalf("picked %s after it went unhealthy", addr)
		}
	}
	testwait.For(ctx, t, "the selector to be rebuilt without it", func() bool {
		pickOne(t, r, nil, nil)
		return len(r.picks.lookup(testService).snapshot.Load().candidates) == 2
	})

	down.SetHealthy(true)
	testwait.For(ctx, t, "it to be picked again", func() bool { return pickOne(t, r, nil, nil) == down.Addr() })
}

// TestPickFollowsTable checks that endpoints added to and removed from
// the table get and stop getting attempts, and that a change of load alone
// keeps the selector of a policy that does not rank by load.
func TestPickFollowsTable(t *testing.T) {
	ctx := testContext(t)
	table := newPickTable(pickEndpoints(1))
	r := newPickRouter(t, table, Options{DefaultPolicy: PolicyRoundRobin})
	pickOne(t, r, nil, nil)
	ps := r.picks.lookup(testService)

	added := Endpoint{Addr: "127.0.0.1:9"}
	table.Update(testService, "etcd", []Endpoint{added})
	testwait.For(ctx, t, "the added endpoint to be picked", func() bool { return pickOne(t, r, nil, nil) == added.Addr })
	table.Remove(testService, SourceStatic)
	inARow := 0
	testwait.For(ctx, t, "only the added endpoint to be picked", func() bool {
		if pickOne(t, r, nil, nil) == added.Addr {
			inARow++
		} else {
			inARow = 0
		}
		return inARow == 10
	})

	before := ps.snapshot.Load()
	stateOf(t, table, added.Addr).SetLoad(&LoadReport{KnownLoadRate: 0.5, Time: time.Now()})
	testwait.For(ctx, t, "the snapshot to be rebuilt after a change of load", func() bool {
		pickOne(t, r, nil, nil)
		return ps.snapshot.Load() != before
	})
	if after := ps.snapshot.Load(); after.selector != before.selector {
		t.Error("a change of load rebuilt the round robin's selector")
	}
}

// TestPickEjects fails the attempts on one endpoint: it is ejected after
// PassiveHealth.Failures of them in a row, gets no attempt while ejected,
// and gets attempts again when the ejection is over.
func TestPickEjects(t *testing.T) {
	ctx := testContext(t)
	const failures = 3
	table := newPickTable(pickEndpoints(3))
	table.SetPassiveHealth(PassiveHealth{Failures: failures, EjectTime: 200 * time.Millisecond, MaxEjectTime: time.Second}, nil)
	r := newPickRouter(t, table, Options{DefaultPolicy: PolicyRoundRobin})
	bad := stateOf(t, table, "127.0.0.1:1")

	failed := 0
	for failed < failures {
		p, err := r.Pick(testService, "/test.Service/Call", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.Addr != bad.Addr() {
			p.Done(codes.OK, nil)
			continue
		}
		if bad.Ejections() != 0 {
			t.Fatalf("ejected after %d failures, want %d", failed, failures)
		}
		p.Done(codes.Unavailable, nil)
		failed++
	}
	if bad.Ejections() != 1 || !bad.Ejected(time.Now()) {
		t.Fatalf("not ejected after %d failures (ejections %d)", failures, bad.Ejections())
	}
	for range 30 {
		addr := pickOne(t, r, nil, nil)
		// Checked after the pick: ejected now, it was during the pick.
		if addr == bad.Addr() && bad.Ejected(time.Now()) {
			t.Fatal("picked an ejected endpoint")
		}
	}
	testwait.For(ctx, t, "it to be picked again after the ejection", func() bool { return pickOne(t, r, nil, nil) == bad.Addr() })
	if n := bad.InFlight(); n != 0 {
		t.Errorf("%d attempts still in flight", n)
	}
}

// TestPickPolicies checks that each policy places attempts through Pick
// as it does through a service connection.
func TestPickPolicies(t *testing.T) {
	const hashKey = "x-session-id"
	tests := []struct {
		name   string
		policy string
		eps    []Endpoint
		check  func(ctx context.Context, t *testing.T, r *Router, table *Table)
	}{
		{name: "round-robin cycles", policy: PolicyRoundRobin, eps: pickEndpoints(3),
			check: func(_ context.Context, t *testing.T, r *Router, _ *Table) {
				var got []string
				for range 9 {
					got = append(got, pickOne(t, r, nil, nil))
				}
				if got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
					t.Fatalf("first round %v repeats an endpoint", got[:3])
				}
				for i := 3; i < len(got); i++ {
					if got[i] != got[i-3] {
						t.Fatalf("rounds differ: %v", got)
					}
				}
			}},
		{name: "least-request prefers fewer in flight", policy: PolicyLeastRequest, eps: pickEndpoints(2),
			check: avoidsBusy("which has a call in flight, over an idle endpoint")},
		{name: "peak-ewma prefers the idle endpoint", policy: PolicyPeakEWMA, eps: pickEndpoints(2),
			check: avoidsBusy("whose first call is in flight, over an untried one")},
		{name: "consistent-hash sticks by header", policy: PolicyConsistentHash, eps: pickEndpoints(5),
			check: func(_ context.Context, t *testing.T, r *Router, _ *Table) {
				seen := map[string]bool{}
				for session := range 20 {
					header := metadata.Pairs(hashKey, fmt.Sprint("session-", session))
					first := pickOne(t, r, header, nil)
					seen[first] = true
					for range 10 {
						if addr := pickOne(t, r, header, nil); addr != first {
							t.Fatalf("session %d went to %s, then %s", session, first, addr)
						}
					}
				}
				if len(seen) < 2 {
					t.Errorf("20 sessions all went to %v", seen)
				}
				pickOne(t, r, nil, nil) // no header: spread at random
			}},
		{name: "least-loaded prefers the least loaded", policy: PolicyLeastLoaded, eps: pickEndpoints(3),
			check: func(ctx context.Context, t *testing.T, r *Router, table *Table) {
				now := time.Now()
				for addr, rate := range map[string]float64{"127.0.0.1:1": 0.9, "127.0.0.1:2": 0.1, "127.0.0.1:3": 0.8} {
					stateOf(t, table, addr).SetLoad(&LoadReport{KnownLoadRate: rate, Time: now})
				}
				inARow := 0
				testwait.For(ctx, t, "20 attempts in a row to go to the least loaded", func() bool {
					if pickOne(t, r, nil, nil) == "127.0.0.1:2" {
						inARow++
					} else {
						inARow = 0
					}
					return inARow == 20
				})
			}},
		{name: "weighted-round-robin follows weights", policy: PolicyWeightedRoundRobin,
			eps: []Endpoint{{Addr: "127.0.0.1:1", Metadata: map[string]string{weightKey: "1"}}, {Addr: "127.0.0.1:2", Metadata: map[string]string{weightKey: "3"}}},
			check: func(_ context.Context, t *testing.T, r *Router, _ *Table) {
				counts := map[string]int{}
				for range 400 {
					counts[pickOne(t, r, nil, nil)]++
				}
				if counts["127.0.0.1:1"] != 100 || counts["127.0.0.1:2"] != 300 {
					t.Errorf("400 attempts went %v, want 100 and 300", counts)
				}
			}},
		{name: "failover takes the first priority, then the next", policy: PolicyFailover,
			eps: []Endpoint{
				{Addr: "127.0.0.1:1", Metadata: map[string]string{priorityKey: "2"}},
				{Addr: "127.0.0.1:2", Metadata: map[string]string{priorityKey: "1"}},
				{Addr: "127.0.0.1:3"},
			},
			check: func(_ context.Context, t *testing.T, r *Router, _ *Table) {
				skipping := func(addrs ...string) func(string) bool {
					return func(addr string) bool {
						for _, a := range addrs {
							if a == addr {
								return true
							}
						}
						return false
					}
				}
				for _, tc := range []struct {
					skip []string
					want string
				}{
					{want: "127.0.0.1:2"},
					{skip: []string{"127.0.0.1:2"}, want: "127.0.0.1:1"},
					{skip: []string{"127.0.0.1:2", "127.0.0.1:1"}, want: "127.0.0.1:3"},
				} {
					for range 5 {
						if got := pickOne(t, r, nil, skipping(tc.skip...)); got != tc.want {
							t.Fatalf("skipping %v: picked %s, want %s", tc.skip, got, tc.want)
						}
					}
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := newPickTable(tt.eps)
			r := newPickRouter(t, table, Options{
				DefaultPolicy: tt.policy,
				HashKeys:      map[string]string{testService: hashKey},
			})
			tt.check(testContext(t), t, r, table)
		})
	}
}

// TestPickSkip checks that skipped addresses get no attempt while another
// endpoint is available, and that a pick still succeeds when every
// available endpoint is skipped.
func TestPickSkip(t *testing.T) {
	table := newPickTable(pickEndpoints(3))
	r := newPickRouter(t, table, Options{DefaultPolicy: PolicyRoundRobin})
	stateOf(t, table, "127.0.0.1:3").SetHealthy(false)
	skipOne := func(addr string) bool { return addr == "127.0.0.1:1" }
	skipAll := func(string) bool { return true }
	for range 20 {
		if got := pickOne(t, r, nil, skipOne); got != "127.0.0.1:2" {
			t.Fatalf("skipping :1 with :3 down: picked %s, want :2", got)
		}
		if got := pickOne(t, r, nil, skipAll); got == "127.0.0.1:3" {
			t.Fatalf("skipping all: picked %s, which is down", got)
		}
	}
}

// TestPickDone checks the accounting of attempts: calls in flight and
// picks on the endpoint, ORCA per-call reports, TLS handed on, and a
// zero Picked ended harmlessly.
func TestPickDone(t *testing.T) {
	table := newPickTable(pickEndpoints(1))
	clientTLS := &tls.Config{ServerName: "backend"}
	r := newPickRouter(t, table, Options{ServiceTLS: map[string]*tls.Config{testService: clientTLS}})
	state := stateOf(t, table, "127.0.0.1:1")

	var attempts []Picked
	for range 5 {
		p, err := r.Pick(testService, "/test.Service/Call", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p.TLS != clientTLS {
			t.Fatalf("Picked.TLS is %p, want the service's %p", p.TLS, clientTLS)
		}
		attempts = append(attempts, p)
	}
	if state.InFlight() != 5 || state.Picks() != 5 {
		t.Fatalf("after 5 picks: %d in flight, %d picks", state.InFlight(), state.Picks())
	}
	for i, p := range attempts {
		var load *v3orcapb.OrcaLoadReport
		if i == len(attempts)-1 {
			load = &v3orcapb.OrcaLoadReport{ApplicationUtilization: 0.25, CpuUtilization: 0.5}
		}
		p.Done(codes.OK, load)
	}
	if state.InFlight() != 0 || state.Picks() != 5 {
		t.Errorf("after Done: %d in flight, %d picks", state.InFlight(), state.Picks())
	}
	if load := state.Load(); load == nil || load.Source != "orca-call" || load.KnownLoadRate != 0.25 || load.Utilization != 0.5 {
		t.Errorf("load after an ORCA report: %+v", load)
	}
	Picked{}.Done(codes.Unavailable, nil)

	_, err := newPickRouter(t, table, Options{}).Pick("nosuch.Svc", "/nosuch.Svc/Call", nil, nil)
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("Pick of an unknown service: %v", err)
	}
}

// TestPickAfterClose checks that a closed router refuses picks.
func TestPickAfterClose(t *testing.T) {
	table := newPickTable(pickEndpoints(2))
	r := newPickRouter(t, table, Options{})
	pickOne(t, r, nil, nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := r.Pick(testService, "/test.Service/Call", nil, nil)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Pick after Close: %v", err)
	}
}

// retryOptions lists svc.A/Get and every method of svc.B as idempotent.
func retryOptions() Options {
	return Options{Retry: RetryConfig{
		IdempotentMethods: []string{"svc.A/Get", "svc.B/*"},
		MaxAttempts:       4,
		InitialBackoff:    10 * time.Millisecond,
		MaxBackoff:        25 * time.Millisecond,
		Budget:            RetryBudget{MaxTokens: 10, TokenRatio: 0.5},
	}}
}

func newRetryRouter(t *testing.T) *Router {
	table := NewTable()
	for _, service := range []string{"svc.A", "svc.B", "svc.C"} {
		table.Update(service, SourceStatic, pickEndpoints(1))
	}
	r := newPickRouter(t, table, retryOptions())
	for _, service := range []string{"svc.A", "svc.B", "svc.C"} {
		p, err := r.Pick(service, "/"+service+"/Get", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(codes.OK, nil)
	}
	return r
}

func TestPickRetryDelay(t *testing.T) {
	r := newRetryRouter(t)
	r.picks.random = func() float64 { return 0.5 } // no jitter
	tests := []struct {
		name, service, method string
		attempts              int
		want                  time.Duration // 0: no retry
	}{
		{name: "listed method", service: "svc.A", method: "/svc.A/Get", attempts: 1, want: 10 * time.Millisecond},
		{name: "second retry doubles", service: "svc.A", method: "/svc.A/Get", attempts: 2, want: 20 * time.Millisecond},
		{name: "capped at max backoff", service: "svc.A", method: "/svc.A/Get", attempts: 3, want: 25 * time.Millisecond},
		{name: "max attempts made", service: "svc.A", method: "/svc.A/Get", attempts: 4},
		{name: "method not listed", service: "svc.A", method: "/svc.A/Put", attempts: 1},
		{name: "wildcard", service: "svc.B", method: "/svc.B/Put", attempts: 1, want: 10 * time.Millisecond},
		{name: "service not listed", service: "svc.C", method: "/svc.C/Get", attempts: 1},
		{name: "method of another service", service: "svc.A", method: "/svc.B/Get", attempts: 1},
		{name: "never picked", service: "svc.D", method: "/svc.D/Get", attempts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := r.RetryDelay(tt.service, tt.method, tt.attempts)
			if ok != (tt.want != 0) || got != tt.want {
				t.Errorf("RetryDelay(%q, %q, %d) = %v, %v; want %v", tt.service, tt.method, tt.attempts, got, ok, tt.want)
			}
		})
	}
}

// TestPickRetryDelayJitter checks the ±20 % around the backoff, with gRPC's
// own randomness.
func TestPickRetryDelayJitter(t *testing.T) {
	r := newRetryRouter(t)
	for _, tc := range []struct {
		attempts int
		base     time.Duration
	}{{1, 10 * time.Millisecond}, {2, 20 * time.Millisecond}, {3, 25 * time.Millisecond}} {
		low, high := time.Duration(float64(tc.base)*0.8), time.Duration(float64(tc.base)*1.2)
		minSeen, maxSeen := high, low
		for range 1000 {
			d, ok := r.RetryDelay("svc.A", "/svc.A/Get", tc.attempts)
			if !ok || d < low || d >= high {
				t.Fatalf("attempts %d: %v, %v; want in [%v, %v)", tc.attempts, d, ok, low, high)
			}
			minSeen, maxSeen = min(minSeen, d), max(maxSeen, d)
		}
		// 1000 uniform draws fill most of the range.
		if minSeen > low+(high-low)/10 || maxSeen < high-(high-low)/10 {
			t.Errorf("attempts %d: delays spread over [%v, %v] only", tc.attempts, minSeen, maxSeen)
		}
	}
}

// TestPickRetryBudget exhausts a service's retry budget with failed attempts
// of an idempotent method, and refills it with successful calls.
func TestPickRetryBudget(t *testing.T) {
	r := newRetryRouter(t) // budget: 10 tokens, 0.5 back per success
	attempt := func(method string, code codes.Code) {
		t.Helper()
		p, err := r.Pick("svc.A", method, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		p.Done(code, nil)
	}
	allowed := func() bool {
		_, ok := r.RetryDelay("svc.A", "/svc.A/Get", 1)
		return ok
	}
	// Failures of a method that is not retried take nothing, as in gRPC.
	for range 20 {
		attempt("/svc.A/Put", codes.Unavailable)
	}
	if !allowed() {
		t.Fatal("failures of a method not retried took the budget")
	}
	// Tokens: 10 → 6, still more than half.
	for range 4 {
		attempt("/svc.A/Get", codes.Unavailable)
	}
	if !allowed() {
		t.Fatal("retries refused with 6 tokens of 10 left")
	}
	attempt("/svc.A/Get", codes.Unavailable) // 5: half, no more retries
	if allowed() {
		t.Fatal("retries allowed with half the budget left")
	}
	// Other failures (and cancellations) take nothing.
	attempt("/svc.A/Get", codes.Canceled)
	attempt("/svc.A/Get", codes.Internal)
	if allowed() {
		t.Fatal("a call that failed without UNAVAILABLE gave tokens back")
	}
	attempt("/svc.A/Put", codes.OK) // any successful call gives 0.5 back
	if !allowed() {
		t.Fatal("retries refused after a success refilled the budget past half")
	}
	for range 100 {
		attempt("/svc.A/Get", codes.OK)
	}
	budget := r.picks.lookup("svc.A").budget
	if got := budget.tokensLeft(); got != 10 {
		t.Errorf("budget after 100 successes: %g tokens, want the full 10", got)
	}
	for range 100 {
		attempt("/svc.A/Get", codes.Unavailable)
	}
	if got := budget.tokensLeft(); got != 0 {
		t.Errorf("budget after 100 failures: %g tokens, want 0", got)
	}
}

// TestPickConcurrent places attempts from several goroutines while the
// table changes under them; run with -race.
func TestPickConcurrent(t *testing.T) {
	ctx := testContext(t)
	table := newPickTable(pickEndpoints(4))
	for _, policy := range Policies() {
		t.Run(policy, func(t *testing.T) {
			r := newPickRouter(t, table, Options{DefaultPolicy: policy, HashKeys: map[string]string{testService: "x-key"}})
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					header := metadata.Pairs("x-key", strconv.Itoa(g))
					for i := 0; i < 500 && ctx.Err() == nil; i++ {
						p, err := r.Pick(testService, "/test.Service/Call", header, func(addr string) bool { return i%2 == 0 && addr == "127.0.0.1:1" })
						if err != nil {
							continue // every endpoint down for a moment
						}
						p.Done(codes.OK, nil)
					}
				})
			}
			eps, _ := table.Endpoints(testService)
			for i := range 200 {
				ep := eps[i%len(eps)]
				ep.State.SetHealthy(i%3 != 0)
				ep.State.SetLoad(&LoadReport{KnownLoadRate: float64(i%10) / 10, Time: time.Now()})
				if i%50 == 0 {
					table.Update(testService, "etcd", pickEndpoints(i/50%5+2))
				}
			}
			wg.Wait()
			for _, ep := range eps {
				ep.State.SetHealthy(true)
				if n := ep.State.InFlight(); n != 0 {
					t.Errorf("%s: %d attempts in flight after all ended", ep.Addr, n)
				}
			}
		})
	}
}

// BenchmarkPick measures one Pick and Done per op, from parallel
// goroutines, over 10 endpoints.
func BenchmarkPick(b *testing.B) {
	for _, policy := range []string{PolicyRoundRobin, PolicyLeastLoaded, PolicyLeastRequest, PolicyConsistentHash} {
		b.Run(policy, func(b *testing.B) {
			table := newPickTable(pickEndpoints(10))
			r := newPickRouter(b, table, Options{DefaultPolicy: policy, HashKeys: map[string]string{testService: "x-key"}})
			header := metadata.Pairs("x-key", "session-1")
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, err := r.Pick(testService, "/test.Service/Call", header, nil)
					if err != nil {
						b.Error(err)
						return
					}
					p.Done(codes.OK, nil)
				}
			})
		})
	}
}

// BenchmarkPickRebuild measures rebuilding a service's snapshot after a
// change of health or load, as a pick does at most every
// minRebuildInterval while they change: endpoints in random order (as
// the registry lists them), healthy and reporting loads.
func BenchmarkPickRebuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			eps := pickEndpoints(n)
			rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { eps[i], eps[j] = eps[j], eps[i] })
			table := NewTable()
			table.Update(testService, "etcd", eps)
			r := newPickRouter(b, table, Options{})
			ps, err := r.newPickService(testService)
			if err != nil {
				b.Fatal(err)
			}
			listed, _ := table.Endpoints(testService)
			for i, ep := range listed {
				ep.State.SetLoad(&LoadReport{Utilization: float64(i%100) / 100, Source: "report", Time: time.Now()})
			}
			b.ReportAllocs()
			for b.Loop() {
				ps.build(ps.snapshot.Load())
			}
		})
	}
}

func ExampleRouter_Pick() {
	table := NewTable()
	table.Update("quaestor.example.v1.Echo", SourceStatic, []Endpoint{{Addr: "127.0.0.1:5161"}})
	router, err := NewRouter(Options{Table: table})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer router.Close()

	const method = "/quaestor.example.v1.Echo/Unary"
	for attempts := 1; ; attempts++ {
		p, err := router.Pick("quaestor.example.v1.Echo", method, nil, nil)
		if err != nil {
			fmt.Println(err) // a status error for the client
			return
		}
		fmt.Println("attempt", attempts, "on", p.Addr)
		code, headersSent := codes.OK, true // forward the call to p.Addr, with p.TLS
		p.Done(code, nil)
		if code != codes.Unavailable || headersSent {
			return
		}
		wait, ok := router.RetryDelay("quaestor.example.v1.Echo", method, attempts)
		if !ok {
			return
		}
		time.Sleep(wait)
	}
	// Output: attempt 1 on 127.0.0.1:5161
}

// avoidsBusy checks that, with a call in flight on one of two endpoints,
// the policy places the next calls on the other; why ends the failure.
func avoidsBusy(why string) func(context.Context, *testing.T, *Router, *Table) {
	return func(_ context.Context, t *testing.T, r *Router, _ *Table) {
		busy, err := r.Pick(testService, "/test.Service/Call", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Done(codes.OK, nil)
		for range 20 {
			if addr := pickOne(t, r, nil, nil); addr == busy.Addr {
				t.Fatalf("picked %s, %s", addr, why)
			}
		}
	}
}
