package routing

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLeastRequest(t *testing.T) {
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
			got := shares(sel, candidates, picks(t.Context()), 10_000, false)
			if diff := cmp.Diff(tt.want, got, approx(0.03)); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPeakEWMA(t *testing.T) {
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
		latency: map[string]time.Duration{"a:1": 5 * time.Millisecond},
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
			got := shares(sel, candidates, picks(t.Context()), 10_000, false)
			if diff := cmp.Diff(tt.want, got, approx(0.03)); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}
