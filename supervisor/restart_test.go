package supervisor

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBackoff(t *testing.T) {
	const lo, hi = time.Second, time.Minute
	tests := []struct {
		name string
		step int
		r    float64
		want time.Duration
	}{
		{name: "first restart waits the minimum", step: 0, r: 0.9, want: lo},
		{name: "second, low draw", step: 1, r: 0, want: lo},
		{name: "second, high draw", step: 1, r: 0.5, want: 1500 * time.Millisecond},
		{name: "doubles", step: 3, r: 0.5, want: 4500 * time.Millisecond},
		{name: "capped", step: 10, r: 0.5, want: lo + (hi-lo)/2},
		{name: "no overflow far out", step: 1000, r: 0.99, want: lo + time.Duration(0.99*float64(hi-lo))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := backoff(lo, hi, tt.step, tt.r); got != tt.want {
				t.Errorf("backoff(step %d, r %v) = %s, want %s", tt.step, tt.r, got, tt.want)
			}
		})
	}
}

// TestRestartPolicy plays runs against a fake clock: each run starts at
// an offset and lasts a while; the policy answers with a wait or fatal.
func TestRestartPolicy(t *testing.T) {
	cfg := RestartConfig{
		MinBackoff: time.Second, MaxBackoff: 8 * time.Second,
		CrashLoopStarts: 3, CrashLoopWindow: time.Minute, FatalRetry: 5 * time.Minute, StableAfter: 30 * time.Second,
	}
	type run struct {
		start, lasts time.Duration // from the test's epoch
	}
	tests := []struct {
		name string
		runs []run
		want []string
	}{
		{
			name: "crash loop",
			runs: []run{{0, time.Second}, {2 * time.Second, time.Second}, {5 * time.Second, time.Second}},
			want: []string{"wait 1s", "wait 2s", "fatal"},
		},
		{
			name: "starts outside the window do not count",
			runs: []run{{0, time.Second}, {2 * time.Second, time.Second}, {70 * time.Second, time.Second}, {72 * time.Second, time.Second}},
			want: []string{"wait 1s", "wait 2s", "wait 4s", "wait 8s"},
		},
		{
			name: "a stable run resets the backoff and the count",
			runs: []run{{0, time.Second}, {2 * time.Second, time.Second}, {5 * time.Second, 40 * time.Second}, {46 * time.Second, time.Second}, {48 * time.Second, time.Second}, {50 * time.Second, time.Second}},
			want: []string{"wait 1s", "wait 2s", "wait 1s", "wait 2s", "wait 4s", "fatal"},
		},
		{
			name: "backoff capped at max",
			runs: []run{{0, 0}, {10 * time.Minute, 0}, {20 * time.Minute, 0}, {30 * time.Minute, 0}, {40 * time.Minute, 0}, {50 * time.Minute, 0}},
			want: []string{"wait 1s", "wait 2s", "wait 4s", "wait 8s", "wait 8s", "wait 8s"},
		},
	}
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A draw at the top of the range: every wait is its ceiling.
			p := restartPolicy{rand: func() float64 { return 1 }}
			var got []string
			for _, r := range tt.runs {
				start := epoch.Add(r.start)
				p.started(start)
				wait, fatal := p.afterRun(cfg, start, start.Add(r.lasts))
				if fatal {
					got = append(got, "fatal")
					p.reset()
					continue
				}
				got = append(got, "wait "+wait.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decisions (-want +got):\n%s", diff)
			}
		})
	}
}
