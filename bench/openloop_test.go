package main

import (
	"context"
	"testing"
	"time"
)

func TestDueAtAndCallsIn(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		name string
		rate float64
		i    int
		want time.Duration
	}{
		{"first call at the start", 1000, 0, 0},
		{"1000/s", 1000, 7, 7 * time.Millisecond},
		{"3/s", 3, 1, 333333333 * time.Nanosecond},
		{"20000/s", 20000, 20000, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dueAt(start, tt.rate, tt.i).Sub(start); got != tt.want {
				t.Errorf("dueAt(rate %g, %d) = start + %s, want + %s", tt.rate, tt.i, got, tt.want)
			}
		})
	}
	if got := callsIn(2500, 2*time.Second); got != 5000 {
		t.Errorf("callsIn(2500, 2s) = %d, want 5000", got)
	}
}

// TestPaceKeepsIntendedTimes checks that the pacer hands out every call's
// intended time, in order and on schedule, and not before it is due; a
// slow receiver gets the calls it missed with their original times.
func TestPaceKeepsIntendedTimes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const (
		rate = 2000.0
		n    = 100
	)
	due := make(chan time.Time) // unbuffered: the receiver sets the pace
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pace(ctx, start, rate, n, due)
		close(due)
	}()
	i := 0
	for intended := range due {
		if want := dueAt(start, rate, i); !intended.Equal(want) {
			t.Fatalf("call %d: intended %s after start, want %s", i, intended.Sub(start), want.Sub(start))
		}
		if now := time.Now(); now.Before(intended) {
			t.Fatalf("call %d handed out %s before it was due", i, intended.Sub(now))
		}
		if i == 10 {
			// A stall of the receiver: the calls due meanwhile keep their
			// times.
			time.Sleep(10 * time.Millisecond)
		}
		i++
	}
	<-done
	if i != n {
		t.Errorf("got %d calls, want %d", i, n)
	}
}

func TestPaceStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	due := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pace(ctx, time.Now(), 1, 1000, due) // a call a second: would take 1000 s
	}()
	<-due
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("pace did not return after its context was cancelled")
	}
}
