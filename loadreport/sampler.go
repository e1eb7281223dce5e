package loadreport

import (
	"log/slog"
	"time"
)

// cpuTimes are a machine's cumulative CPU times, in any unit, summed over
// all CPUs: busy is the part of total not spent idle (or, on Linux, waiting
// for I/O).
type cpuTimes struct {
	busy, total uint64
}

// machine reads the machine's counters; the OS-specific files provide the
// real one (systemMachine), the tests their own.
type machine struct {
	// cpuTimes returns the cumulative CPU times.
	cpuTimes func() (cpuTimes, error)
	// memoryPercent returns the memory in use, in percent of the total.
	memoryPercent func() (float64, error)
}

// sample is one reading of the machine and of the call counters, as
// Report gives it out.
type sample struct {
	cpu      float64 // 0 to 1
	memory   float64 // percent, 0 to 100
	qps, eps float64
}

// sampler turns successive readings into a sample: CPU use and rates are
// differences between the previous reading and this one. Only the
// Reporter's sampling goroutine uses it (and New, before starting that).
type sampler struct {
	machine machine
	log     *slog.Logger

	last       sample
	prevCPU    cpuTimes
	prevCalls  uint64
	prevFailed uint64
	prevAt     time.Time // zero before the first sample

	// cpuErr and memoryErr are the last failures logged, so that a
	// failure that persists (an unsupported system) is logged once.
	cpuErr, memoryErr string
}

// take reads the machine at now, when started calls had started and failed
// had failed, and returns the new sample.
func (s *sampler) take(now time.Time, started, failed uint64) *sample {
	next := s.last
	if cur, err := s.machine.cpuTimes(); s.logFailure(&s.cpuErr, "sampling CPU", err) {
		// Before the first reading prevCPU is zero, which gives the
		// average since boot: better than 0 until the second sample.
		if cpu, ok := cpuUtilization(s.prevCPU, cur); ok {
			next.cpu = cpu
		}
		s.prevCPU = cur
	}
	if mem, err := s.machine.memoryPercent(); s.logFailure(&s.memoryErr, "sampling memory", err) {
		next.memory = min(max(mem, 0), 100)
	}
	if !s.prevAt.IsZero() {
		if elapsed := now.Sub(s.prevAt).Seconds(); elapsed > 0 {
			next.qps = float64(started-s.prevCalls) / elapsed
			next.eps = float64(failed-s.prevFailed) / elapsed
		}
	}
	s.prevAt, s.prevCalls, s.prevFailed = now, started, failed
	s.last = next
	return &next
}

// logFailure logs err unless it is the failure last logged under *last, and
// reports whether there was no error. A success forgets the last failure,
// so that a failure coming back is logged again.
func (s *sampler) logFailure(last *string, what string, err error) bool {
	if err == nil {
		*last = ""
		return true
	}
	if err.Error() != *last {
		*last = err.Error()
		s.log.Warn("loadreport: "+what+" failed; reporting the last value (0 if none)", "err", err)
	}
	return false
}

// cpuUtilization returns the share of CPU time spent busy between two
// readings, 0 to 1. It returns false when no CPU time passed in between (two
// readings within one clock tick, or counters that went back), so that the
// previous figure is kept.
func cpuUtilization(prev, cur cpuTimes) (float64, bool) {
	if cur.total <= prev.total {
		return 0, false
	}
	total := float64(cur.total - prev.total)
	// busy may go back when an idle counter such as Linux's iowait does.
	busy := float64(cur.busy) - float64(prev.busy)
	return min(max(busy/total, 0), 1), true
}
