package routing

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPolicyPeakEWMA(t *testing.T) {
	tests := []struct {
		name    string
		eps     []testEndpoint
		latency map[string]time.Duration
		want    map[string]float64
	}{{
		name:    "the slowest is never chosen",
		eps:     []testEndpoint{{addr: "a:1"}, {addr: "b:1"}, {addr: "c:1"}},
		latency: map[string]time.Duration{"a:1": 10 * time.Millisecond, "b:1": 2 * time.Millisecond, "c:1": 2 * time.Millisecond},
		want:    map[string]float64{"a:1": 0, "b:1": 0.5, "c:1": 0.5},
	}, {
		name:    "latency times calls in flight",
		eps:     []testEndpoint{{addr: "a:1", inFlight: 9}, {addr: "b:1"}},
		latency: map[string]time.Duration{"a:1": time.Millisecond, "b:1": 5 * time.Millisecond},
		want:    map[string]float64{"a:1": 0, "b:1": 1},
	}, {
		name:    "an untried endpoint is tried",
		eps:     []testEndpoint{{addr: "a:1"}, {addr: "b:1"}},
		latency: map[string]time.Duration{"a:1": 10 * time.Microsecond},
		want:    map[string]float64{"a:1": 0, "b:1": 1},
	}, {
		name:    "an untried endpoint with a call in flight waits for it",
		eps:     []testEndpoint{{addr: "a:1", inFlight: 1}, {addr: "b:1", inFlight: 3}},
		latency: map[string]time.Duration{"b:1": 50 * time.Millisecond},
		want:    map[string]float64{"a:1": 0, "b:1": 1},
	}, {
		name:    "equal endpoints share evenly",
		eps:     []testEndpoint{{addr: "a:1"}, {addr: "b:1"}},
		latency: map[string]time.Duration{"a:1": 3 * time.Millisecond, "b:1": 3 * time.Millisecond},
		want:    map[string]float64{"a:1": 0.5, "b:1": 0.5},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			candidates := newCandidates(tt.eps...)
			for _, c := range candidates {
				if d, ok := tt.latency[c.Addr]; ok {
					c.State.Started()
					c.State.Finished(d)
				}
			}
			sel := peakEWMA{}.NewSelector(candidates)
			got := selectShares(sel, candidates, pickInfo(t.Context()), 10_000, false)
			if diff := cmp.Diff(tt.want, got, approxShares(0.03)); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}
