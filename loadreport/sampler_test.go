package loadreport

import (
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/quaestor-go/quaestor/internal/syncbuf"
)

// TestSampler runs the sampler on synctest's clock: each interval gives CPU
// use over the interval, memory, and call rates.
func TestSampler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		m := &fakeMachine{cpu: cpuTimes{busy: 50, total: 200}, memory: 30}
		r := newReporter(Options{Capacity: 8, Interval: time.Second}, time.Now, m.machine())
		defer r.Close()

		// The first sample, taken by New: CPU since boot, no rates yet.
		want := Snapshot{Capacity: 8, KnownLoadRate: -1, CPU: 0.25, Memory: 30, Time: start}
		if diff := cmp.Diff(want, r.Report()); diff != "" {
			t.Errorf("first snapshot (-want +got):\n%s", diff)
		}

		m.set(func(m *fakeMachine) {
			m.cpu = cpuTimes{busy: 50 + 90, total: 200 + 100}
			m.memory = 40
		})
		for range 20 {
			r.begin()
			r.end(nil)
		}
		for range 5 {
			r.begin()
			r.end(errors.New("failed"))
		}
		r.begin() // still running
		time.Sleep(time.Second)
		synctest.Wait()
		want = Snapshot{InFlight: 1, Capacity: 8, KnownLoadRate: -1, CPU: 0.9, Memory: 40, QPS: 26, EPS: 5, Time: start.Add(time.Second)}
		if diff := cmp.Diff(want, r.Report()); diff != "" {
			t.Errorf("second snapshot (-want +got):\n%s", diff)
		}

		// No CPU time passed: the last CPU figure stays; no calls: the
		// rates drop to 0.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		want = Snapshot{InFlight: 1, Capacity: 8, KnownLoadRate: -1, CPU: 0.9, Memory: 40, Time: start.Add(3 * time.Second)}
		if diff := cmp.Diff(want, r.Report()); diff != "" {
			t.Errorf("snapshot after an idle interval (-want +got):\n%s", diff)
		}

		// Close waits for the sampler, which reads no more.
		r.Close()
		reads := m.readCount()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := m.readCount(); got != reads {
			t.Errorf("%d machine reads after Close, want none", got-reads)
		}
		r.Close() // a second Close is harmless
	})
}

// TestSamplerFailures checks that a failing reading keeps the last figure
// and is logged once until it recovers.
func TestSamplerFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncbuf.Buffer
		m := &fakeMachine{cpuErr: errors.New("no /proc"), memory: 20}
		r := newReporter(Options{Interval: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, time.Now, m.machine())
		defer r.Close()

		step := func(change func(m *fakeMachine)) {
			m.set(change)
			time.Sleep(time.Second)
			synctest.Wait()
		}
		step(func(m *fakeMachine) {})
		step(func(m *fakeMachine) {})
		if got := r.Report().CPU; got != 0 {
			t.Errorf("CPU after failures only = %v, want 0", got)
		}
		if got := logs.Count("sampling CPU failed"); got != 1 {
			t.Errorf("CPU failure logged %d times over 3 failures, want once", got)
		}

		step(func(m *fakeMachine) { m.cpuErr, m.cpu = nil, cpuTimes{busy: 1, total: 2} })
		step(func(m *fakeMachine) { m.cpuErr = errors.New("no /proc") })
		step(func(m *fakeMachine) { m.memoryErr = errors.New("no meminfo") })
		if got, want := r.Report(), (Snapshot{KnownLoadRate: -1, CPU: 0.5, Memory: 20, Time: r.now()}); !cmp.Equal(got, want) {
			t.Errorf("snapshot after failures = %+v, want the last figures %+v", got, want)
		}
		if got := logs.Count("sampling CPU failed"); got != 2 {
			t.Errorf("CPU failure logged %d times, want twice (again after recovering)", got)
		}
		if got := logs.Count("sampling memory failed"); got != 1 {
			t.Errorf("memory failure logged %d times, want once", got)
		}
	})
}

func TestCPUUtilization(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur cpuTimes
		want      float64
		wantOK    bool
	}{
		{name: "since boot", cur: cpuTimes{busy: 25, total: 100}, want: 0.25, wantOK: true},
		{name: "over the interval", prev: cpuTimes{busy: 25, total: 100}, cur: cpuTimes{busy: 85, total: 180}, want: 0.75, wantOK: true},
		{name: "idle", prev: cpuTimes{busy: 25, total: 100}, cur: cpuTimes{busy: 25, total: 200}, want: 0, wantOK: true},
		{name: "busy went back", prev: cpuTimes{busy: 25, total: 100}, cur: cpuTimes{busy: 20, total: 200}, want: 0, wantOK: true},
		{name: "busy beyond total", prev: cpuTimes{busy: 25, total: 100}, cur: cpuTimes{busy: 200, total: 110}, want: 1, wantOK: true},
		{name: "no time passed", prev: cpuTimes{busy: 25, total: 100}, cur: cpuTimes{busy: 25, total: 100}},
		{name: "counters reset", prev: cpuTimes{busy: 25, total: 100}, cur: cpuTimes{busy: 1, total: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cpuUtilization(tt.prev, tt.cur)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("cpuUtilization(%+v, %+v) = %v, %v; want %v, %v", tt.prev, tt.cur, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
