package routing

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/metadata"
)

// testEndpoint describes one candidate of a policy test.
type testEndpoint struct {
	addr     string
	metadata map[string]string
	load     *LoadReport
	inFlight int
}

// newCandidates returns the ready candidates for eps, sorted by address as
// the balancer passes them, each with a state of its own.
func newCandidates(eps ...testEndpoint) []Candidate {
	candidates := make([]Candidate, len(eps))
	for i, ep := range eps {
		state := newEndpointState("test.Service", ep.addr)
		if ep.load != nil {
			state.SetLoad(ep.load)
		}
		for range ep.inFlight {
			state.Started()
		}
		candidates[i] = Candidate{Endpoint: Endpoint{
			Addr:     ep.addr,
			Source:   SourceStatic,
			ID:       ep.addr,
			Metadata: ep.metadata,
			State:    state,
		}}
	}
	slices.SortFunc(candidates, func(a, b Candidate) int { return compareEndpoints(a.Endpoint, b.Endpoint) })
	return candidates
}

// numberedCandidates returns n plain candidates, "10.0.0.0:50051" onwards.
func numberedCandidates(n int) []Candidate {
	eps := make([]testEndpoint, n)
	for i := range eps {
		eps[i].addr = fmt.Sprintf("10.0.%d.%d:50051", i/256, i%256)
	}
	return newCandidates(eps...)
}

// selectShares places calls with sel and returns each candidate's share of them,
// by address. When start is set, every call stays in flight (Started and
// never Finished), as during a burst.
func selectShares(sel Selector, candidates []Candidate, info balancer.PickInfo, calls int, start bool) map[string]float64 {
	got := make(map[string]float64, len(candidates))
	for _, c := range candidates {
		got[c.Addr] = 0
	}
	for range calls {
		c := sel.Select(info)
		if start {
			c.State.Started()
		}
		got[c.Addr] += 1 / float64(calls)
	}
	return got
}

// approxShares compares shares to within tolerance.
func approxShares(tolerance float64) cmp.Option { return cmpopts.EquateApprox(0, tolerance) }

// pickInfo returns the PickInfo of a call carrying md as outgoing metadata.
func pickInfo(ctx context.Context, md ...string) balancer.PickInfo {
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	return balancer.PickInfo{FullMethodName: "/test.Service/Call", Ctx: ctx}
}

// TestPoliciesSelectConcurrently runs every policy's Select from several
// goroutines while calls start and finish; run with -race.
func TestPoliciesSelectConcurrently(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const goroutines, calls = 8, 2000
	for _, name := range Policies() {
		t.Run(name, func(t *testing.T) {
			policy, err := NewPolicy(name, PolicyConfig{HashKey: "x-session-id"})
			if err != nil {
				t.Fatal(err)
			}
			candidates := numberedCandidates(5)
			for i := range candidates {
				candidates[i].State.SetLoad(&LoadReport{KnownLoadRate: 0.5, Utilization: 0.5, QPS: 100, Time: time.Now()})
			}
			sel := policy.NewSelector(candidates)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					for i := range calls {
						if ctx.Err() != nil {
							return
						}
						c := sel.Select(pickInfo(ctx, "x-session-id", fmt.Sprint(g*calls+i)))
						if !containsPointer(candidates, c) {
							t.Errorf("Select returned %v, not one of the candidates", c)
							return
						}
						c.State.Started()
						c.State.Finished(time.Duration(i%7) * time.Millisecond)
					}
				})
			}
			wg.Wait()
			if err := ctx.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// containsPointer reports whether c points into candidates, as a selector's
// result must.
func containsPointer(candidates []Candidate, c *Candidate) bool {
	for i := range candidates {
		if &candidates[i] == c {
			return true
		}
	}
	return false
}

// TestPoliciesSelectTheOnlyCandidate checks that every policy selects the
// only candidate there is, with and without a hash key.
func TestPoliciesSelectTheOnlyCandidate(t *testing.T) {
	for _, name := range Policies() {
		t.Run(name, func(t *testing.T) {
			policy, err := NewPolicy(name, PolicyConfig{HashKey: "x-session-id"})
			if err != nil {
				t.Fatal(err)
			}
			candidates := numberedCandidates(1)
			sel := policy.NewSelector(candidates)
			for _, info := range []balancer.PickInfo{pickInfo(t.Context()), pickInfo(t.Context(), "x-session-id", "s1")} {
				if got := sel.Select(info); got != &candidates[0] {
					t.Errorf("Select = %v, want the only candidate %s", got, candidates[0].Addr)
				}
			}
		})
	}
}
