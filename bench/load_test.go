package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tiny shrinks a scenario so that the whole matrix runs in a few seconds
// under the race detector, keeping its kind and shape.
func tiny(sc scenario) scenario {
	sc.callers = min(sc.callers, 8)
	sc.conns = min(sc.conns, 2)
	if sc.kind == serverStreamCall {
		sc.responseSize = 64 << 10
		sc.responseCount = 4
	}
	return sc
}

// TestEveryTargetAndScenario runs each scenario briefly against each
// target, through the real servers, and checks that calls succeed and are
// counted: it keeps the harness working, it measures nothing.
func TestEveryTargetAndScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tb, err := startTestbed(2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := tb.Close(); err != nil {
			t.Errorf("closing testbed: %v", err)
		}
	}()
	settings := loadSettings{warmup: 20 * time.Millisecond, duration: 200 * time.Millisecond, callTimeout: 10 * time.Second}
	scenarios := make([]scenario, 0, 3)
	for _, sc := range defaultScenarios() {
		scenarios = append(scenarios, tiny(sc))
	}
	m := newMeasurements(scenarios, allTargets, 1)
	for _, sc := range scenarios {
		for _, target := range allTargets {
			t.Run(sc.name+"/"+target, func(t *testing.T) {
				res, err := measure(ctx, tb.addrs[target], sc, settings)
				if err != nil {
					t.Fatal(err)
				}
				m.set(sc, target, 0, res)
				if res.errors != 0 {
					t.Errorf("%d calls failed, e.g. %q", res.errors, res.errorSamples)
				}
				if res.calls == 0 || res.callLatency.count() != uint64(res.calls) {
					t.Errorf("calls = %d, latencies recorded = %d, want the same non-zero count", res.calls, res.callLatency.count())
				}
				wantMessages := res.calls
				if sc.kind == serverStreamCall {
					wantMessages *= int64(sc.responseCount)
					if got := res.messageGap.count(); got != uint64(wantMessages) {
						t.Errorf("message gaps recorded = %d, want %d", got, wantMessages)
					}
				}
				if res.messages != wantMessages {
					t.Errorf("messages = %d, want %d for %d calls", res.messages, wantMessages, res.calls)
				}
				if res.elapsed < settings.duration {
					t.Errorf("elapsed = %s, want at least the duration %s", res.elapsed, settings.duration)
				}
			})
		}
	}

	var report strings.Builder
	info := runInfo{date: time.Now(), rounds: 1, backends: 2, settings: settings}
	if err := writeReport(&report, info, m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## unary-16", "## unary-256", "## stream-1MiB", "| quaestor |", "| grpc-proxy |", "| direct |"} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, report.String())
		}
	}
}
