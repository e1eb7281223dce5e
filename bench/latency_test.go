package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistogramQuantiles checks the quantiles against the exact ones of the
// recorded values: within 1 %, as the report promises.
func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		draw func() time.Duration
	}{
		{"constant", func() time.Duration { return 1234567 * time.Nanosecond }},
		{"small exact", func() time.Duration { return time.Duration(rng.IntN(128)) }},
		{"uniform ms", func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) }},
		{"log-normal", func() time.Duration {
			return time.Duration(math.Exp(rng.NormFloat64()*2 + 12)) // around 160 µs, wide tail
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistogram()
			values := make([]time.Duration, 10000)
			for i := range values {
				values[i] = tt.draw()
				h.record(values[i])
			}
			slices.Sort(values)
			for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := max(int(math.Ceil(q*float64(len(values)))), 1)
				want := values[rank-1]
				got := h.quantile(q)
				if diff := math.Abs(float64(got - want)); diff > 0.01*float64(want) {
					t.Errorf("quantile(%g) = %d, want %d within 1 %%", q, got, want)
				}
			}
		})
	}
}

func TestHistogramMergeAndEmpty(t *testing.T) {
	if got := newHistogram().quantile(0.5); got != 0 {
		t.Errorf("empty quantile(0.5) = %s, want 0", got)
	}
	a, b := newHistogram(), newHistogram()
	a.record(time.Millisecond)
	b.record(3 * time.Millisecond)
	b.record(time.Hour) // beyond the last bucket: clamped to the exact max
	a.merge(b)
	if a.count() != 3 {
		t.Errorf("count = %d, want 3", a.count())
	}
	if got := a.quantile(0); got != time.Millisecond {
		t.Errorf("quantile(0) = %s, want 1ms", got)
	}
	if got := a.quantile(1); got != time.Hour {
		t.Errorf("quantile(1) = %s, want 1h", got)
	}
}
