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

// leastSquares2 fits y = a + b*x + c*z and returns b and c. When z does not
// vary, or moves in lockstep with x, it fits y on x alone (c = 0).
func leastSquares2(xs, zs, ys []float64) (b, c float64) {
	n := len(xs)
	if n < 3 || len(zs) != n || len(ys) != n {
		b, _ = leastSquares(xs, ys)
		return b, 0
	}
	mean := func(v []float64) float64 {
		var s float64
		for _, x := range v {
			s += x
		}
		return s / float64(n)
	}
	mx, mz, my := mean(xs), mean(zs), mean(ys)
	var sxx, szz, sxz, sxy, szy float64
	for i := range xs {
		dx, dz, dy := xs[i]-mx, zs[i]-mz, ys[i]-my
		sxx += dx * dx
		szz += dz * dz
		sxz += dx * dz
		sxy += dx * dy
		szy += dz * dy
	}
	det := sxx*szz - sxz*sxz
	if szz == 0 || det <= 1e-9*sxx*szz {
		b, _ = leastSquares(xs, ys)
		return b, 0
	}
	return (szz*sxy - sxz*szy) / det, (sxx*szy - sxz*sxy) / det
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
	// perEndpoint is the fitted cost of one endpoint in the proxy's table:
	// the series moves with the number of endpoints, which the churn
	// swings, so the trend is taken net of it.
	perEndpoint float64
	// first and last are the medians of the first and last edgeSamples,
	// each adjusted to the window's mean endpoint count.
	first, last float64
	// slopePerMinute is the least-squares slope over time (net of the
	// endpoint count); fittedRise the fit's rise over the whole window.
	slopePerMinute, fittedRise float64
	allowed                    float64
	// checked is false when there were too few samples; flat is false
	// when the fitted rise or last-first exceeds allowed. reason says why
	// either is false.
	checked, flat bool
	reason        string
}

// checkTrend fits ys over minutes and endpoints (all after warm-up;
// endpoints may be nil) and compares the rise over time with tol. It needs
// at least 2*edgeSamples samples.
func checkTrend(name string, minutes, endpoints, ys []float64, tol tolerance) trend {
	t := trend{name: name}
	if len(ys) < 2*edgeSamples || len(minutes) != len(ys) {
		t.reason = fmt.Sprintf("%d samples after warm-up; the check needs %d", len(ys), 2*edgeSamples)
		return t
	}
	t.checked = true
	adjusted := ys
	if len(endpoints) == len(ys) {
		t.slopePerMinute, t.perEndpoint = leastSquares2(minutes, endpoints, ys)
		meanEndpoints := 0.0
		for _, n := range endpoints {
			meanEndpoints += n / float64(len(endpoints))
		}
		adjusted = make([]float64, len(ys))
		for i, y := range ys {
			adjusted[i] = y - t.perEndpoint*(endpoints[i]-meanEndpoints)
		}
	} else {
		t.slopePerMinute, _ = leastSquares(minutes, ys)
	}
	t.first = median(adjusted[:edgeSamples])
	t.last = median(adjusted[len(adjusted)-edgeSamples:])
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
