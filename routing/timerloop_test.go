package routing

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestTimerLoop: runs repeat until one returns false; stop waits for a
// run under way, and none comes after it; stop after the end returns.
func TestTimerLoop(t *testing.T) {
	var runs atomic.Int32
	l := startTimerLoop(0, func() (time.Duration, bool) {
		return time.Millisecond, runs.Add(1) < 5
	})
	l.running.Wait()
	if got := runs.Load(); got != 5 {
		t.Fatalf("%d runs, want 5", got)
	}
	l.stop()

	release := make(chan struct{})
	started := make(chan struct{}, 1)
	var during atomic.Int32
	l = startTimerLoop(0, func() (time.Duration, bool) {
		during.Add(1)
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return 0, true
	})
	<-started
	stopped := make(chan struct{})
	go func() {
		l.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("stop returned while a run was under way")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-stopped
	time.Sleep(10 * time.Millisecond)
	if got := during.Load(); got != 1 {
		t.Errorf("%d runs, want 1: none after stop", got)
	}

	// Stopped while waiting: no run at all.
	var never atomic.Int32
	l = startTimerLoop(time.Hour, func() (time.Duration, bool) {
		never.Add(1)
		return 0, true
	})
	l.stop()
	l.stop()
	if never.Load() != 0 {
		t.Error("a run after stop")
	}
}
