package routing

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testNow is the clock of the policy tests.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// rateReport is a fresh report of a known load rate.
func rateReport(rate, utilization float64) *LoadReport {
	return &LoadReport{KnownLoadRate: rate, Utilization: utilization, Source: "report", Time: testNow}
}

func TestPolicyLeastLoadedRanksByFreshLoad(t *testing.T) {
	stale := rateReport(0.9, 0.9)
	stale.Time = testNow.Add(-20 * time.Second)
	fiveSecondsOld := rateReport(0.9, 0)
	fiveSecondsOld.Time = testNow.Add(-5 * time.Second)
	tests := []struct {
		name   string
		maxAge time.Duration
		eps    []testEndpoint
		want   map[string]float64
	}{{
		name: "lowest rate takes all",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(0.1, 0.5)},
			{addr: "b:1", load: rateReport(0.5, 0.1)},
			{addr: "c:1", load: rateReport(0.9, 0)},
		},
		want: map[string]float64{"a:1": 1, "b:1": 0, "c:1": 0},
	}, {
		name: "equal loads spread evenly",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(0.5, 0.5)},
			{addr: "b:1", load: rateReport(0.5, 0.5)},
			{addr: "c:1", load: rateReport(0.5, 0.5)},
		},
		want: map[string]float64{"a:1": 1.0 / 3, "b:1": 1.0 / 3, "c:1": 1.0 / 3},
	}, {
		name: "rates within half a percent tie",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(0.501, 0.2)},
			{addr: "b:1", load: rateReport(0.499, 0.2)},
		},
		want: map[string]float64{"a:1": 0.5, "b:1": 0.5},
	}, {
		name: "host loads within a step tie (instances of one machine)",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(-1, 0.11)},
			{addr: "b:1", load: rateReport(-1, 0.12)},
			{addr: "c:1", load: rateReport(-1, 0.14)},
		},
		want: map[string]float64{"a:1": 1.0 / 3, "b:1": 1.0 / 3, "c:1": 1.0 / 3},
	}, {
		name: "utilization breaks a tie of rates",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(0.3, 0.7)},
			{addr: "b:1", load: rateReport(0.3, 0.2)},
		},
		want: map[string]float64{"a:1": 0, "b:1": 1},
	}, {
		name: "current over capacity without a known rate",
		eps: []testEndpoint{
			{addr: "a:1", load: &LoadReport{KnownLoadRate: -1, CurrentRequests: 80, RequestCapacity: 100, Time: testNow}},
			{addr: "b:1", load: &LoadReport{KnownLoadRate: -1, CurrentRequests: 20, RequestCapacity: 100, Time: testNow}},
		},
		want: map[string]float64{"a:1": 0, "b:1": 1},
	}, {
		name: "no report ranks as idle",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(0.2, 0)},
			{addr: "b:1"},
		},
		want: map[string]float64{"a:1": 0, "b:1": 1},
	}, {
		name: "unknown rate ranks as idle, by utilization",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(-1, 0.6)},
			{addr: "b:1", load: rateReport(-1, 0.3)},
			{addr: "c:1", load: rateReport(0.1, 0)},
		},
		want: map[string]float64{"a:1": 0, "b:1": 1, "c:1": 0},
	}, {
		name: "a stale report is ignored",
		eps: []testEndpoint{
			{addr: "a:1", load: stale},
			{addr: "b:1", load: rateReport(0.5, 0.1)},
		},
		want: map[string]float64{"a:1": 1, "b:1": 0},
	}, {
		name:   "max age is configurable",
		maxAge: 2 * time.Second,
		eps: []testEndpoint{
			{addr: "a:1", load: fiveSecondsOld},
			{addr: "b:1", load: rateReport(0.5, 0.1)},
		},
		want: map[string]float64{"a:1": 1, "b:1": 0},
	}, {
		name: "a report within the default max age counts",
		eps: []testEndpoint{
			{addr: "a:1", load: fiveSecondsOld},
			{addr: "b:1", load: rateReport(0.5, 0.1)},
		},
		want: map[string]float64{"a:1": 0, "b:1": 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			candidates := newCandidates(tt.eps...)
			sel := leastLoaded{maxAge: tt.maxAge}.newSelector(candidates, testNow)
			got := selectShares(sel, candidates, pickInfo(t.Context()), 10_000, false)
			if diff := cmp.Diff(tt.want, got, approxShares(0.001)); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPolicyLeastLoadedCallsInFlight(t *testing.T) {
	tests := []struct {
		name  string
		eps   []testEndpoint
		calls int
		// want is each endpoint's share of the calls, all left in flight.
		want map[string]float64
	}{{
		name: "busy member of the tier is passed over",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(0.5, 0.5), inFlight: 50},
			{addr: "b:1", load: rateReport(0.5, 0.5)},
			{addr: "c:1", load: rateReport(0.5, 0.5)},
		},
		calls: 100,
		want:  map[string]float64{"a:1": 0, "b:1": 0.5, "c:1": 0.5},
	}, {
		name: "calls left in flight spread evenly over the tier",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(0.5, 0.5)},
			{addr: "b:1", load: rateReport(0.5, 0.5)},
			{addr: "c:1", load: rateReport(0.5, 0.5)},
			{addr: "d:1", load: rateReport(0.6, 0.5)},
		},
		calls: 9_999,
		want:  map[string]float64{"a:1": 1.0 / 3, "b:1": 1.0 / 3, "c:1": 1.0 / 3, "d:1": 0},
	}, {
		name: "in flight counts for capacity",
		eps: []testEndpoint{
			{addr: "a:1", load: &LoadReport{KnownLoadRate: 0.5, RequestCapacity: 10, Time: testNow}, inFlight: 3},
			{addr: "b:1", load: &LoadReport{KnownLoadRate: 0.5, RequestCapacity: 1000, Time: testNow}, inFlight: 20},
		},
		calls: 1,
		want:  map[string]float64{"a:1": 0, "b:1": 1},
	}, {
		// a takes calls until 40 in flight bring it to b's 0.5 (in
		// flight/100 with unknown capacity), then they share.
		name: "a burst on the best spreads to the next best",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(0.1, 0)},
			{addr: "b:1", load: rateReport(0.5, 0)},
			{addr: "c:1", load: rateReport(0.9, 0)},
		},
		calls: 100,
		want:  map[string]float64{"a:1": 0.7, "b:1": 0.3, "c:1": 0},
	}, {
		name: "a burst spreads over the next best tier",
		eps: []testEndpoint{
			{addr: "a:1", load: rateReport(0.1, 0)},
			{addr: "b:1", load: rateReport(0.2, 0)},
			{addr: "c:1", load: rateReport(0.2, 0)},
		},
		calls: 70,
		want:  map[string]float64{"a:1": 30.0 / 70, "b:1": 20.0 / 70, "c:1": 20.0 / 70},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			candidates := newCandidates(tt.eps...)
			sel := leastLoaded{}.newSelector(candidates, testNow)
			got := selectShares(sel, candidates, pickInfo(t.Context()), tt.calls, true)
			// Within two calls: which of a tie goes first depends on the
			// selector's random start.
			if diff := cmp.Diff(tt.want, got, approxShares(2.0/float64(tt.calls))); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}
