package routing

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// orcaReport is a fresh ORCA report.
func orcaReport(qps, eps, utilization float64) *LoadReport {
	return &LoadReport{KnownLoadRate: -1, Utilization: utilization, QPS: qps, EPS: eps, Source: "orca-oob", Time: testNow}
}

func TestPolicyWeightedRoundRobin(t *testing.T) {
	weight := func(w string) map[string]string { return map[string]string{weightKey: w} }
	stale := orcaReport(100, 0, 0.1)
	stale.Time = testNow.Add(-time.Minute)
	tests := []struct {
		name string
		eps  []testEndpoint
		want map[string]float64
	}{{
		name: "metadata weights",
		eps:  []testEndpoint{{addr: "a:1", metadata: weight("1")}, {addr: "b:1", metadata: weight("2")}, {addr: "c:1", metadata: weight("3")}},
		want: map[string]float64{"a:1": 1.0 / 6, "b:1": 2.0 / 6, "c:1": 3.0 / 6},
	}, {
		name: "fractional metadata weights",
		eps:  []testEndpoint{{addr: "a:1", metadata: weight("0.25")}, {addr: "b:1", metadata: weight("0.75")}},
		want: map[string]float64{"a:1": 0.25, "b:1": 0.75},
	}, {
		name: "no weights: round robin",
		eps:  []testEndpoint{{addr: "a:1"}, {addr: "b:1"}, {addr: "c:1"}},
		want: map[string]float64{"a:1": 1.0 / 3, "b:1": 1.0 / 3, "c:1": 1.0 / 3},
	}, {
		name: "weights from qps over utilization",
		eps: []testEndpoint{
			{addr: "a:1", load: orcaReport(100, 0, 0.5)},  // 200
			{addr: "b:1", load: orcaReport(100, 0, 0.25)}, // 400
			{addr: "c:1", load: orcaReport(100, 0, 1)},    // 100
		},
		want: map[string]float64{"a:1": 2.0 / 7, "b:1": 4.0 / 7, "c:1": 1.0 / 7},
	}, {
		name: "errors count as utilization",
		eps: []testEndpoint{
			{addr: "a:1", load: orcaReport(100, 50, 0.5)}, // 100 / (0.5 + 0.5)
			{addr: "b:1", load: orcaReport(100, 0, 0.5)},  // 200
		},
		want: map[string]float64{"a:1": 1.0 / 3, "b:1": 2.0 / 3},
	}, {
		name: "metadata wins over reports",
		eps: []testEndpoint{
			{addr: "a:1", metadata: weight("100"), load: orcaReport(100, 0, 0.1)},
			{addr: "b:1", metadata: weight("300"), load: orcaReport(100, 0, 1)},
		},
		want: map[string]float64{"a:1": 0.25, "b:1": 0.75},
	}, {
		name: "unweighted endpoints weigh the mean",
		eps:  []testEndpoint{{addr: "a:1", metadata: weight("1")}, {addr: "b:1", metadata: weight("3")}, {addr: "c:1"}},
		want: map[string]float64{"a:1": 1.0 / 6, "b:1": 3.0 / 6, "c:1": 2.0 / 6},
	}, {
		name: "reports without qps or utilization give no weight",
		eps: []testEndpoint{
			{addr: "a:1", load: orcaReport(0, 0, 0.5)},
			{addr: "b:1", load: orcaReport(100, 0, 0)},
			{addr: "c:1", load: orcaReport(100, 0, 0.5)},
		},
		want: map[string]float64{"a:1": 1.0 / 3, "b:1": 1.0 / 3, "c:1": 1.0 / 3},
	}, {
		name: "stale reports give no weight",
		eps:  []testEndpoint{{addr: "a:1", load: stale}, {addr: "b:1", load: orcaReport(100, 0, 1)}},
		want: map[string]float64{"a:1": 0.5, "b:1": 0.5},
	}, {
		name: "invalid metadata weights are ignored",
		eps: []testEndpoint{
			{addr: "a:1", metadata: weight("-1")},
			{addr: "b:1", metadata: weight("heavy")},
			{addr: "c:1", metadata: weight("0")},
			{addr: "d:1", metadata: weight("NaN")},
		},
		want: map[string]float64{"a:1": 0.25, "b:1": 0.25, "c:1": 0.25, "d:1": 0.25},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			candidates := newCandidates(tt.eps...)
			sel := weightedRoundRobin{}.newSelector(candidates, testNow)
			got := selectShares(sel, candidates, pickInfo(t.Context()), 10_000, false)
			if diff := cmp.Diff(tt.want, got, approxShares(0.01)); diff != "" {
				t.Errorf("shares (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPolicyWeightedRoundRobinInterleaves checks that a heavy endpoint's calls
// are spread over the round, not sent in a run.
func TestPolicyWeightedRoundRobinInterleaves(t *testing.T) {
	candidates := newCandidates(
		testEndpoint{addr: "a:1", metadata: map[string]string{weightKey: "1"}},
		testEndpoint{addr: "b:1", metadata: map[string]string{weightKey: "1"}},
		testEndpoint{addr: "c:1", metadata: map[string]string{weightKey: "4"}},
	)
	sel := weightedRoundRobin{}.newSelector(candidates, testNow)
	got := make([]string, len(sel.schedule))
	for i, index := range sel.schedule {
		got[i] = candidates[index].Addr
	}
	// c is due at 1/8, 3/8, 5/8 and 7/8 of the round, a and b at 1/2.
	want := []string{"c:1", "c:1", "a:1", "b:1", "c:1", "c:1"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schedule (-want +got):\n%s", diff)
	}
}

// TestPolicyWeightedRoundRobinScheduleBounded checks that the schedule of many
// endpoints with scattered weights stays short and gives every endpoint a
// slot.
func TestPolicyWeightedRoundRobinScheduleBounded(t *testing.T) {
	candidates := numberedCandidates(1000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range candidates {
		candidates[i].Metadata = map[string]string{weightKey: strconv.FormatFloat(r.ExpFloat64()*100, 'f', -1, 64)}
	}
	sel := weightedRoundRobin{}.newSelector(candidates, testNow)
	if got, limit := len(sel.schedule), maxScheduleSlots+len(candidates); got > limit {
		t.Errorf("schedule has %d slots, want at most %d", got, limit)
	}
	slots := make([]int, len(candidates))
	for _, index := range sel.schedule {
		slots[index]++
	}
	for i, n := range slots {
		if n == 0 {
			t.Errorf("%s has no slot", candidates[i].Addr)
		}
	}
}
