//go:build linux

package main

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The soak re-executes its own binary, here the test binary, as a
	// backend.
	if isBackend() {
		os.Exit(runBackend(os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

func TestLeastSquares(t *testing.T) {
	tests := []struct {
		name             string
		xs, ys           []float64
		slope, intercept float64
	}{
		{"line", []float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}, 2, 1},
		{"flat", []float64{0, 1, 2}, []float64{4, 4, 4}, 0, 4},
		{"falling", []float64{1, 2, 3}, []float64{3, 2, 1}, -1, 4},
		// Noise symmetric about y = 10 + 0.5x leaves the fit on it.
		{"noisy", []float64{0, 1, 2, 3}, []float64{11, 9.5, 10, 12.5}, 0.5, 10},
		{"one x", []float64{2, 2}, []float64{1, 3}, 0, 2},
		{"too few", []float64{1}, []float64{1}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slope, intercept := leastSquares(tt.xs, tt.ys)
			if math.Abs(slope-tt.slope) > 1e-9 || math.Abs(intercept-tt.intercept) > 1e-9 {
				t.Errorf("leastSquares = %v, %v; want %v, %v", slope, intercept, tt.slope, tt.intercept)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median of 3 1 2 = %v", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 4 1 3 2 = %v", got)
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median of nothing = %v, want NaN", got)
	}
}

func TestCheckTrend(t *testing.T) {
	minutes := []float64{2, 3, 4, 5, 6, 7, 8, 9, 10}
	tol := tolerance{rel: 0.1, abs: 5} // 15 allowed at a level of 100
	tests := []struct {
		name string
		ys   []float64
		flat bool
	}{
		{"flat", []float64{100, 100, 100, 100, 100, 100, 100, 100, 100}, true},
		{"noise within the tolerance", []float64{100, 110, 95, 105, 98, 112, 101, 96, 104}, true},
		{"falling", []float64{100, 95, 90, 85, 80, 75, 70, 65, 60}, true},
		// 2.5 a minute: 20 over the window, more than 15.
		{"steady leak", []float64{100, 102.5, 105, 107.5, 110, 112.5, 115, 117.5, 120}, false},
		// The fit over the window rises 12.5, within 15, but the end is
		// 20 above the start.
		{"jump at the end", []float64{100, 100, 100, 100, 100, 100, 120, 120, 120}, false},
		// One spike does not move the medians, and the fit stays within.
		{"one spike", []float64{100, 100, 100, 100, 160, 100, 100, 100, 100}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkTrend("x", minutes, nil, tt.ys, tol)
			if got.flat != tt.flat {
				t.Errorf("flat = %v, want %v (%+v)", got.flat, tt.flat, got)
			}
			if !got.checked {
				t.Errorf("not checked: %s", got.reason)
			}
			if !got.flat && got.reason == "" {
				t.Error("not flat without a reason")
			}
		})
	}
	if got := checkTrend("x", minutes[:5], nil, make([]float64, 5), tol); got.checked || got.flat || got.reason == "" {
		t.Errorf("5 samples: %+v, want not checked, with a reason", got)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 187
go_memstats_heap_inuse_bytes 1.1526144e+07
quaestor_proxy_requests_total{code="OK",method="Unary",service="quaestor.example.v1.Echo"} 19503
quaestor_proxy_requests_total{code="OK",method="ServerStream",service="quaestor.example.v1.Echo"} 5
quaestor_proxy_requests_total{code="Unavailable",method="Unary",service="quaestor.example.v1.Echo"} 7
quaestor_proxy_request_duration_seconds_count{method="Unary",service="quaestor.example.v1.Echo"} 19510
quaestor_endpoint_healthy{addr="127.0.0.1:1",service="quaestor.example.v1.Echo"} 1
quaestor_endpoint_healthy{addr="127.0.0.1:2",service="quaestor.example.v1.Echo"} 0
quaestor_endpoint_healthy{addr="127.0.0.1:3",service="quaestor.example.v1.Echo"} 1
quaestor_endpoint_healthy{addr="127.0.0.1:5150",service="Quaestor.ServiceDiscovery.ServiceDiscoveryGrpc"} 1
quaestor_proxy_in_flight{method="Unary",service="quaestor.example.v1.Echo"} 3
quaestor_proxy_in_flight{method="ServerStream",service="quaestor.example.v1.Echo"} 2
`
	got := parseMetrics(text)
	want := proxyMetrics{
		goroutines: 187, heapInuse: 11526144, hasGoroutines: true, hasHeap: true,
		requests: 19515, errors: 7,
		requestsByCode: map[string]float64{"OK": 19508, "Unavailable": 7},
		endpoints:      3, healthy: 2, inFlight: 5,
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(proxyMetrics{})); diff != "" {
		t.Errorf("parseMetrics (-want +got):\n%s", diff)
	}
}

func TestReadRSS(t *testing.T) {
	rss, err := readRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 {
		t.Errorf("RSS of this test = %v bytes, want at least 1 MiB", rss)
	}
}

func TestAttributeFailures(t *testing.T) {
	start := time.Now()
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	var l eventLog
	l.addAt(at(1), "churn", actionKill, "backend-01")
	l.addAt(at(1.01), "unary", "Unavailable", "reset")
	l.addAt(at(1.02), "stream", "Unavailable", "reset")
	l.addAt(at(2), "churn", "serving again", "backend-02") // not a cause
	l.addAt(at(2.5), "unary", "Unavailable", "reset")
	l.addAt(at(9), "unary", "DeadlineExceeded", "slow")
	// Logged out of order: the stop's event is logged before the failure
	// it caused was, but with an earlier time.
	l.addAt(at(20.1), "stream", "Unavailable", "goaway")
	l.addAt(at(20), "churn", actionStop, "backend-03")
	got := l.attribute(3 * time.Second)
	want := map[string]map[string]int{
		actionKill: {"unary": 2, "stream": 1},
		causeNone:  {"unary": 1},
		actionStop: {"stream": 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attribute (-want +got):\n%s", diff)
	}
}

func TestGrownStacks(t *testing.T) {
	warm := `goroutine profile: total 5
3 @ 0x1 0x2 0x3
#	0x1	runtime.gopark+0x10	/x/proc.go:1
#	0x2	google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run+0xfc	/y.go:114

2 @ 0x1 0x4
#	0x1	runtime.gopark+0x10	/x/proc.go:1
#	0x4	main.idle+0x1	/z.go:1
`
	end := strings.Replace(warm, "3 @ 0x1 0x2 0x3", "9 @ 0x1 0x2 0x3", 1) + `
1 @ 0x5
#	0x5	main.newOne+0x1	/z.go:2
`
	got := grownStacks(parseGoroutines(warm), parseGoroutines(end), 5)
	want := []stackCount{
		{stack: "google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run", warm: 3, end: 9},
		{stack: "main.newOne", warm: 0, end: 1},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(stackCount{})); diff != "" {
		t.Errorf("grownStacks (-want +got):\n%s", diff)
	}
}

// TestChurnRounds checks the churn's plan: every kind of action in the
// first round (the short soak sees only that one), and more adds than
// removals while growing, fewer while shrinking.
func TestChurnRounds(t *testing.T) {
	net := func(from, to int) (adds, removals int) {
		for i := from; i < to; i++ {
			switch churnAction(i) {
			case actionAdd:
				adds++
			case actionKill, actionStop, actionDelete:
				removals++
			}
		}
		return adds, removals
	}
	kinds := map[string]bool{}
	for i := range len(growRound) {
		kinds[churnAction(i)] = true
	}
	if len(kinds) != 5 {
		t.Errorf("first round takes %v, want all five actions", kinds)
	}
	round := len(growRound)
	if adds, removals := net(0, growRounds*round); adds <= removals {
		t.Errorf("growing rounds: %d adds, %d removals", adds, removals)
	}
	if adds, removals := net(growRounds*round, (growRounds+shrinkRounds)*round); adds >= removals {
		t.Errorf("shrinking rounds: %d adds, %d removals", adds, removals)
	}
	if churnAction((growRounds+shrinkRounds)*round) != churnAction(0) {
		t.Error("the plan does not start over after a period")
	}
}

func TestLeastSquares2(t *testing.T) {
	xs := []float64{0, 1, 2, 3, 4, 5}
	zs := []float64{3, 9, 4, 10, 5, 8}
	ys := make([]float64, len(xs))
	for i := range xs {
		ys[i] = 100 + 2*xs[i] + 13*zs[i]
	}
	b, c := leastSquares2(xs, zs, ys)
	if math.Abs(b-2) > 1e-9 || math.Abs(c-13) > 1e-9 {
		t.Errorf("leastSquares2 = %v, %v; want 2, 13", b, c)
	}
	// z constant: a fit on x alone.
	b, c = leastSquares2(xs, []float64{4, 4, 4, 4, 4, 4}, ys[:6])
	if c != 0 {
		t.Errorf("constant z: c = %v, want 0 (b %v)", c, b)
	}
}

// TestCheckTrendNetOfEndpoints: goroutines that follow the endpoint count
// are flat, even when the window starts with few endpoints and ends with
// many; a leak on top of them is not.
func TestCheckTrendNetOfEndpoints(t *testing.T) {
	minutes := []float64{2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	endpoints := []float64{3, 3, 3, 7, 10, 8, 5, 10, 10, 10}
	tol := tolerance{rel: 0.2, abs: 50}
	following := make([]float64, len(minutes))
	leaking := make([]float64, len(minutes))
	for i := range minutes {
		following[i] = 150 + 13*endpoints[i]
		leaking[i] = following[i] + 15*(minutes[i]-2)
	}
	if got := checkTrend("goroutines", minutes, nil, following, tol); got.flat {
		t.Fatalf("without the endpoint count the swing should look like growth: %+v", got)
	}
	if got := checkTrend("goroutines", minutes, endpoints, following, tol); !got.flat || math.Abs(got.perEndpoint-13) > 1e-6 {
		t.Errorf("following the endpoints: %+v, want flat at 13 per endpoint", got)
	}
	if got := checkTrend("goroutines", minutes, endpoints, leaking, tol); got.flat || math.Abs(got.slopePerMinute-15) > 1e-6 {
		t.Errorf("leaking 15/min: %+v, want not flat at 15/min", got)
	}
}
