package routing

import (
	"testing"
	"time"
)

// TestPhase: the first waits of periodic checks fall anywhere in the
// interval, never at 0 and never past it.
func TestPhase(t *testing.T) {
	const d = time.Second
	lo, hi := d, time.Duration(0)
	for range 1000 {
		p := phase(d)
		if p <= 0 || p > d {
			t.Fatalf("phase(%s) = %s, want in (0, %s]", d, p, d)
		}
		lo, hi = min(lo, p), max(hi, p)
	}
	if lo > d/10 || hi < d*9/10 {
		t.Errorf("1,000 phases of %s span %s to %s, want them spread over it", d, lo, hi)
	}
	if got := phase(1); got != 1 {
		t.Errorf("phase(1ns) = %s", got)
	}
}
