package main

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
	"time"
)

// fakeResult is a result of calls successful calls in 1 s, each taking
// latency, with the proxy using proxyCPU (a quarter of it in the kernel)
// and the backend 100 ms.
func fakeResult(calls int64, latency, proxyCPU time.Duration) *result {
	r := newResult()
	r.elapsed = time.Second
	r.calls, r.messages = calls, calls
	for range calls {
		r.callLatency.record(latency)
	}
	if proxyCPU > 0 {
		r.proxyCPU, r.proxySystem, r.proxyCPUKnown = proxyCPU, proxyCPU/4, true
		r.proxyPeakMem, r.proxyMemKnown = 30<<20, true
	}
	r.backendCPU, r.backendCPUKnown = 100*time.Millisecond, true
	return r
}

// TestReportRatiosAndColumns renders a report from made-up results and
// checks the medians, ratios and CPU accounting in its rows.
func TestReportRatiosAndColumns(t *testing.T) {
	unary := defaultScenarios()[0]
	reg1, reg1000 := instanceScenario(1), instanceScenario(1000)
	targets := []string{targetDirect, targetQuaestor, targetHAProxy}
	m := newMeasurements([]scenario{unary, reg1, reg1000}, targets, 3)
	for round := range 3 {
		m.set(unary, targetDirect, round, fakeResult(4000, time.Millisecond, 0))
		// quaestor: 2000 calls/s, 0.5 s CPU for 2000 calls = 2.5 s/10k.
		m.set(unary, targetQuaestor, round, fakeResult(2000, 2*time.Millisecond, 500*time.Millisecond))
		m.set(unary, targetHAProxy, round, fakeResult(1000+int64(round)*500, 3*time.Millisecond, 200*time.Millisecond))
		m.set(reg1, targetQuaestor, round, fakeResult(2000, time.Millisecond, 500*time.Millisecond))
		m.set(reg1000, targetQuaestor, round, fakeResult(1800, time.Millisecond, 500*time.Millisecond))
		m.set(reg1, targetHAProxy, round, fakeResult(2000, time.Millisecond, 500*time.Millisecond))
		m.set(reg1000, targetHAProxy, round, fakeResult(1200, time.Millisecond, 600*time.Millisecond))
	}
	open := newOpenLoopResults([]float64{1000, 2000}, targets, 1)
	for _, tgt := range targets {
		open.results[tgt][0][0] = fakeResult(1000, time.Millisecond, 0)
		open.results[tgt][1][0] = fakeResult(1900, 5*time.Millisecond, 0)
	}
	var b strings.Builder
	info := runInfo{date: time.Unix(0, 0), command: "bench -rounds 3", rounds: 3, versions: [][2]string{{"haproxy", "HAProxy version 2.6"}},
		openRates: open.rates, openRounds: 1}
	if err := writeReport(&b, info, m, open); err != nil {
		t.Fatal(err)
	}
	report := b.String()
	for _, want := range []string{
		"- command: `bench -rounds 3`",
		"- haproxy: `HAProxy version 2.6`",
		// direct: 4000 calls/s, 4000/1500 = 2.67 times HAProxy's median.
		"| direct | 4000 | 4000–4000 | 1.00 | 2.67 | 1.00 ms |",
		// quaestor: 0.5 of direct, 1.33 of HAProxy (median of 2, 1.33, 1),
		// 2.5 CPU s per 10k calls, a quarter in the kernel, 0.5 cores,
		// 30 MiB; no client CPU measured; the backend's 100 ms over 2000
		// calls.
		"| quaestor | 2000 | 2000–2000 | 0.50 | 1.33 | 2.00 ms | 2.00 ms | 2.00 ms | 0 | 2.50 | 25 % | 0.50 | 30.0 MiB | – | 50.0 µs |",
		"| direct | 4000 | 4000–4000 | 1.00 | 2.67 | 1.00 ms | 1.00 ms | 1.00 ms | 0 | – | – | – | – | – | 25.0 µs |",
		"| haproxy | 1500 | 1000–2000 | 0.38 | 1.00 |",
		// 1,000 instances: quaestor at 0.9 of its 1-instance rate, 1.5
		// times HAProxy's with 1,000 servers (itself at 0.6 of its own),
		// which spends 0.6 s on 1200 calls: 5 s per 10k.
		"| 1000 | quaestor | 1800 | 1800–1800 | 0.90 | 1.50 |",
		"| 1000 | haproxy | 1200 | 1200–1200 | 0.60 | 1.00 | 1.00 ms | 1.00 ms | 1.00 ms | 0 | 5.00 |",
		"| 2000 | quaestor | 1900 | 5.00 ms |",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "## instances-1") {
		t.Errorf("registry scenarios have sections of their own, want one table:\n%s", report)
	}
}

func TestPlotLatency(t *testing.T) {
	open := newOpenLoopResults([]float64{1000, 5000, 10000}, allTargets, 1)
	for i, tgt := range allTargets {
		for r := range open.rates {
			open.results[tgt][r][0] = fakeResult(100, time.Duration(i+1)*time.Duration(r+1)*time.Millisecond, 0)
		}
	}
	data, err := plotLatency(open)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Bounds().Size(); got.X != plotWidth || got.Y != plotHeight {
		t.Errorf("plot is %v, want %dx%d", got, plotWidth, plotHeight)
	}
	if _, err := plotLatency(newOpenLoopResults([]float64{1000}, allTargets, 1)); err == nil {
		t.Error("plotting no results: want an error")
	}
}

func TestNiceStep(t *testing.T) {
	for raw, want := range map[float64]float64{0.7: 1, 1: 1, 1.5: 2, 3000: 5000, 2000: 2000, 6000: 10000} {
		if got := niceStep(raw); got != want {
			t.Errorf("niceStep(%g) = %g, want %g", raw, got, want)
		}
	}
}
