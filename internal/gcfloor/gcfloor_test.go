package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		live, scanned, floor uint64
		want                 int
	}{
		{0, 0, 16 * mib, 400}, // the heap minimum: 4 MiB × 4 = 16 MiB
		{1 * mib, 1 * mib, 64 * mib, maxPercent},
		{2 * mib, 3 * mib, 16 * mib, 450}, // the heap minimum: 18 MiB at most
		{6 * mib, 8 * mib, 16 * mib, 200},
		{12 * mib, 13 * mib, 16 * mib, 123},
		{15 * mib, 16 * mib, 16 * mib, 100},
		{200 * mib, 210 * mib, 16 * mib, 100},
	} {
		if got := percentFor(tc.live, tc.scanned, tc.floor); got != tc.want {
			t.Errorf("percentFor(%d MiB live, %d scanned, %d floor) = %d, want %d", tc.live/mib, tc.scanned/mib, tc.floor/mib, got, tc.want)
		}
	}
}

var sink []byte

// cycles counts the collections while 256 MiB of garbage is made, with
// next to nothing live.
func cycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	runtime.GC()
	metrics.Read(s)
	before := s[0].Value.Uint64()
	for range 4096 {
		sink = make([]byte, 64<<10)
	}
	sink = nil
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// TestSetCollectsLessOften: with a 64 MiB floor a small heap is collected
// a handful of times where it was collected dozens; stop puts GOGC back.
func TestSetCollectsLessOften(t *testing.T) {
	t.Setenv("GOGC", "") // restored after the test
	os.Unsetenv("GOGC")
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	without := cycles()
	stop := Set(64 << 20)
	with := cycles()
	stop()
	t.Logf("%d collections with a 64 MiB floor, %d without", with, without)
	if with*4 > without {
		t.Errorf("%d collections with a 64 MiB floor, %d without: want a quarter or fewer", with, without)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC %d after stop, want 100", got)
	}
}

// TestSetLeavesGOGCSet: a GOGC set by the user is kept.
func TestSetLeavesGOGCSet(t *testing.T) {
	t.Setenv("GOGC", "150")
	old := debug.SetGCPercent(150)
	defer debug.SetGCPercent(old)
	stop := Set(64 << 20)
	runtime.GC()
	runtime.GC()
	stop()
	if got := debug.SetGCPercent(old); got != 150 {
		t.Errorf("GOGC %d with GOGC=150 in the environment, want 150", got)
	}
}
