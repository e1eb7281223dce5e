// Package gcfloor keeps the Go heap's goal a fixed amount above the live
// heap when that heap is small.
//
// The collector starts a cycle when the heap has grown by GOGC percent of
// what the last cycle found live (100 %: doubled). A proxy holds little
// (quaestor's live heap is 5 to 10 MiB under load with few instances) and
// allocates a little per call, so at tens of thousands of calls a second
// it collected ten times a second, each cycle a fixed cost, for garbage
// that fits in a few MiB. With a floor the goal is max(2 × live, live +
// floor): a small heap is collected a few times less often, and a large
// one (a thousand instances) exactly as before, where raising GOGC would
// have multiplied it.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// maxPercent bounds the GOGC the floor sets, for a heap with almost
// nothing live.
const maxPercent = 1000

// Set keeps the heap goal at least floor bytes above the live heap, by
// setting GOGC after each collection, until stop puts GOGC back to 100,
// the default. It does nothing when the GOGC environment variable is set:
// the user's setting stands. Call it once per process.
func Set(floor uint64) (stop func()) {
	if _, ok := os.LookupEnv("GOGC"); ok || floor == 0 {
		return func() {}
	}
	t := &tuner{floor: floor, sample: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
	t.adjust()
	t.watch()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.stopped = true
		debug.SetGCPercent(100)
	}
}

type tuner struct {
	floor  uint64
	sample []metrics.Sample
	// mu orders adjust, on the runtime's finalizer goroutine, and stop.
	mu      sync.Mutex
	percent int
	stopped bool
}

// watch calls adjust after every collection: a sentinel object's
// finalizer runs once a cycle has found it unreachable, and makes the
// next sentinel.
func (t *tuner) watch() {
	runtime.SetFinalizer(new(sentinel), func(*sentinel) {
		if t.adjust() {
			t.watch()
		}
	})
}

// sentinel is large enough to be an object of its own (a tiny one could
// share a block with live ones and never be finalized).
type sentinel struct{ _ [16]byte }

// adjust sets GOGC so that the next goal is about live + max(live,
// floor). It reports false once stopped.
func (t *tuner) adjust() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.sample)
	scanned := t.sample[0].Value.Uint64() + t.sample[1].Value.Uint64() + t.sample[2].Value.Uint64()
	if percent := percentFor(t.sample[0].Value.Uint64(), scanned, t.floor); percent != t.percent {
		t.percent = percent
		debug.SetGCPercent(percent)
	}
	return true
}

// heapMinimum is the runtime's smallest goal at GOGC 100; it scales
// with GOGC.
const heapMinimum = 4 << 20

// percentFor is the GOGC that puts the goal at live + max(scanned,
// floor), at most maxPercent. The runtime's goal is live + scanned ×
// GOGC/100 (scanned: the live heap, stacks and globals), and at least
// heapMinimum × GOGC/100, which must stay under live + floor too.
func percentFor(live, scanned, floor uint64) int {
	if scanned >= floor {
		return 100
	}
	p := uint64(maxPercent)
	if scanned > 0 {
		p = min(p, floor*100/scanned)
	}
	p = min(p, (live+floor)*100/heapMinimum)
	return int(max(p, 100))
}
