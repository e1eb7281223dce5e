package loadreport

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is how often CPU and memory are sampled when
// Options.Interval is not set.
const DefaultInterval = time.Second

// Options configures a Reporter.
type Options struct {
	// Capacity is how many calls the server can run at once, reported as
	// request_capacity. Default 0, which means unknown; negative values are
	// taken as 0.
	Capacity int
	// Interval is how often the machine's CPU and memory are sampled, and
	// the period over which CPU use, QPS and EPS are measured. Default
	// DefaultInterval.
	Interval time.Duration
	// Logger receives sampling failures. Default slog.Default().
	Logger *slog.Logger
}

// Snapshot is a Reporter's current figures.
type Snapshot struct {
	// InFlight is the number of calls running now.
	InFlight int
	// Capacity is Options.Capacity: 0 means unknown.
	Capacity int
	// KnownLoadRate is the rate given to SetKnownLoadRate, or -1 when none
	// is set.
	KnownLoadRate float64
	// CPU is the machine's CPU use over the last sampling interval, 0 to 1.
	// Until the second sample it is the average since the machine booted.
	CPU float64
	// Memory is the machine's memory in use, in percent, 0 to 100.
	Memory float64
	// QPS and EPS are the calls started, and the calls that ended with an
	// error, per second over the last sampling interval; 0 until the
	// second sample.
	QPS, EPS float64
	// Time is when the snapshot was taken.
	Time time.Time
}

// Reporter counts the calls a server runs, samples the machine, and
// serves both as load reports. Its methods are safe for concurrent use;
// create it with New and stop it with Close.
type Reporter struct {
	capacity int
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time

	// The counters are written by every call, so they are atomics: the
	// call path takes no lock.
	inFlight      atomic.Int64
	started       atomic.Uint64 // counted calls started, for QPS
	failed        atomic.Uint64 // counted calls ended with an error, for EPS
	knownLoadRate atomic.Uint64 // float64 bits; -1 when none is set

	// latest is the last machine sample; only the sampler writes it.
	latest  atomic.Pointer[sample]
	sampler *sampler

	ctx    context.Context // done once Close is called
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Reporter configured by opts, with a first sample taken,
// and starts its sampler. Call Close to stop the sampler.
func New(opts Options) *Reporter {
	return newReporter(opts, time.Now, systemMachine())
}

// newReporter is New with the clock and the machine's counters injected.
func newReporter(opts Options, now func() time.Time, m machine) *Reporter {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Reporter{
		capacity: max(opts.Capacity, 0),
		interval: opts.Interval,
		log:      opts.Logger,
		now:      now,
	}
	r.knownLoadRate.Store(math.Float64bits(-1))
	r.sampler = &sampler{machine: m, log: r.log}
	r.latest.Store(r.sampler.take(r.now(), r.started.Load(), r.failed.Load()))
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Go(r.sample)
	return r
}

// sample takes a sample every interval until Close.
func (r *Reporter) sample() {
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-ticker.C:
			r.latest.Store(r.sampler.take(r.now(), r.started.Load(), r.failed.Load()))
		}
	}
}

// Close stops the sampler and waits for it, and ends the ORCA out-of-band
// streams, so that a graceful stop of the server is not held up by them.
// The reporter keeps counting calls and answering with its last sample.
// Close may be called more than once.
func (r *Reporter) Close() {
	r.cancel()
	r.wg.Wait()
}

// SetKnownLoadRate sets the application's own load figure, reported as
// known_load_rate and as ORCA application_utilization instead of calls
// running / capacity. It is typically 0 (idle) to 1 (full). A negative rate
// or NaN clears it.
func (r *Reporter) SetKnownLoadRate(rate float64) {
	if !(rate >= 0) {
		rate = -1
	}
	r.knownLoadRate.Store(math.Float64bits(rate))
}

// InFlight returns the number of calls running now, not counting the
// health, reflection and load-reporting services.
func (r *Reporter) InFlight() int {
	return int(r.inFlight.Load())
}

// Report returns the current figures.
func (r *Reporter) Report() Snapshot {
	s := r.latest.Load()
	return Snapshot{
		InFlight:      r.InFlight(),
		Capacity:      r.capacity,
		KnownLoadRate: math.Float64frombits(r.knownLoadRate.Load()),
		CPU:           s.cpu,
		Memory:        s.memory,
		QPS:           s.qps,
		EPS:           s.eps,
		Time:          r.now(),
	}
}

// begin counts a call that starts.
func (r *Reporter) begin() {
	r.inFlight.Add(1)
	r.started.Add(1)
}

// end counts a call begun with begin that ended with err.
func (r *Reporter) end(err error) {
	r.inFlight.Add(-1)
	if err != nil {
		r.failed.Add(1)
	}
}
