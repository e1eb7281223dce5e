// Package testwait lets tests wait for a condition: it polls the
// condition, bounded by the test's context, instead of sleeping.
package testwait

import (
	"context"
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 5 * time.Millisecond

// Poll returns once cond holds, or with ctx's error when ctx ends first.
// Any goroutine may call it.
func Poll(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// For polls cond until it holds, and fails the test, naming what it
// waited for, when ctx ends first. Like t.Fatal, it must be called from
// the test's goroutine.
func For(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	if err := Poll(ctx, cond); err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}
