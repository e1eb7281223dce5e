package routing

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPolicyLeastRequest(t *testing.T) {
	tests := []struct {
		name string
		eps  []testEndpoint
		want map[string]float64
	}{{
		name: "idle endpoints share evenly",
		eps:  []testEndpoint{{addr: "a:1"}, {addr: "b:1"}, {addr: "c:1"}, {addr: "d:1"}},
		want: map[string]float64{"a:1": 0.25, "b:1": 0.25, "c:1": 0.25, "d:1": 0.25},
	}, {
		name: "the busiest is never chosen",
		eps:  []testEndpoint{{addr: "a:1", inFlight: 10}, {addr: "b:1"}, {addr: "c:1"}},
		want: map[string]float64{"a:1": 0, "b:1": 0.5, "c:1": 0.5},
	}, {
		name: "of two, the less busy",
		eps:  []testEndpoint{{addr: "a:1", inFlight: 2}, {addr: "b:1", inFlight: 1}},
		want: map[string]float64{"a:1": 0, "b:1": 1},
	}, {
		// Each endpoint wins against those busier than it: with 0, 1, 2
		// and 3 in flight, a pair's winner is the lower of two distinct,
		// so the shares are 3/6, 2/6, 1/6, 0.
		name: "shares fall with calls in flight",
		eps:  []testEndpoint{{addr: "a:1"}, {addr: "b:1", inFlight: 1}, {addr: "c:1", inFlight: 2}, {addr: "d:1", inFlight: 3}},
		want: map[string]float64{"a:1": 0.5, "b:1": 2.0 / 6, "c:1": 1.0 / 6, "d:1": 0},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			candidates := newCandidates(tt.eps...)
			sel := leastRequest{}.NewSelector(candidates)
			got := selectShares(sel, candidates, pickInfo(t.Context()), 10_000, false)
			if diff := cmp.Diff(tt.want, got, approxShares(0.03)); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}
