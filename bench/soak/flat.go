//go:build linux

package main

import (
	"fmt"
	"math"
	"slices"
)

// tolerance is how much a series may rise over the measured window:
// abs plus rel times its level at the start of the window.
type tolerance struct {
	rel, abs float64
}

func (t tolerance) allowed(baseline float64) float64 { return t.abs + t.rel*math.Abs(baseline) }

// Tolerances of the flatness check. Goroutines move with the number of
// live backends (each has a health watch, a load poll and its
// connection's goroutines in the proxy) and the calls in flight; heap and
// RSS move with the garbage collector's cycle.
var (
	goroutineTolerance = tolerance{rel: 0.20, abs: 50}
	heapTolerance      = tolerance{rel: 0.25, abs: 8 << 20}
	rssTolerance       = tolerance{rel: 0.25, abs: 32 << 20}
)

// edgeSamples is how many samples make the median at each end of the
// window: one sample caught mid-GC or mid-churn should not decide.
const edgeSamples = 3

// leastSquares fits y = intercept + slope*x.
func leastSquares(xs, ys []float64) (slope, intercept float64) {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return 0, 0
	}
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	if sxx == 0 {
		return 0, my
	}
	slope = sxy / sxx
	return slope, my - slope*mx
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// trend is a series' behaviour over the window after warm-up.
type trend struct {
	name string
	// first and last are the medians of the first and last edgeSamples.
	first, last float64
	// slopePerMinute is the least-squares slope; fittedRise the fit's rise
	// over the whole window.
	slopePerMinute, fittedRise float64
	allowed                    float64
	// checked is false when there were too few samples; flat is false
	// when the fitted rise or last-first exceeds allowed. reason says why
	// either is false.
	checked, flat bool
	reason        string
}

// checkTrend fits ys over minutes (both after warm-up) and compares the rise
// with tol. It needs at least 2*edgeSamples samples.
func checkTrend(name string, minutes, ys []float64, tol tolerance) trend {
	t := trend{name: name}
	if len(ys) < 2*edgeSamples || len(minutes) != len(ys) {
		t.reason = fmt.Sprintf("%d samples after warm-up; the check needs %d", len(ys), 2*edgeSamples)
		return t
	}
	t.checked = true
	t.first = median(ys[:edgeSamples])
	t.last = median(ys[len(ys)-edgeSamples:])
	t.slopePerMinute, _ = leastSquares(minutes, ys)
	t.fittedRise = t.slopePerMinute * (minutes[len(minutes)-1] - minutes[0])
	t.allowed = tol.allowed(t.first)
	switch {
	case t.fittedRise > t.allowed:
		t.reason = fmt.Sprintf("%s rises by %.4g over the window (least-squares slope %.4g/min); at most %.4g allowed", name, t.fittedRise, t.slopePerMinute, t.allowed)
	case t.last-t.first > t.allowed:
		t.reason = fmt.Sprintf("%s ends at %.4g, %.4g above its %.4g after warm-up; at most %.4g allowed", name, t.last, t.last-t.first, t.first, t.allowed)
	default:
		t.flat = true
	}
	return t
}
