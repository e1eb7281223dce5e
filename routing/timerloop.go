package routing

import (
	"sync"
	"time"
)

// timerLoop runs a function on a timer's goroutine, again and again,
// keeping no goroutine between runs: a monitor of a thousand endpoints
// would otherwise keep a thousand goroutines asleep for each periodic
// task.
type timerLoop struct {
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	// running counts the loop until it ends: f said so, or stop.
	running sync.WaitGroup
}

// startTimerLoop runs f after first, then again after the wait each run
// returns, until a run returns false or stop is called.
func startTimerLoop(first time.Duration, f func() (next time.Duration, again bool)) *timerLoop {
	l := &timerLoop{}
	l.running.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = time.AfterFunc(first, func() {
		next, again := f()
		l.mu.Lock()
		defer l.mu.Unlock()
		if !again || l.stopped {
			l.running.Done()
			return
		}
		l.timer.Reset(next)
	})
	return l
}

// stop ends the loop and waits for a run under way: stop what f waits
// for (cancel its context) first.
func (l *timerLoop) stop() {
	l.mu.Lock()
	if !l.stopped {
		l.stopped = true
		if l.timer.Stop() {
			l.running.Done() // it was waiting: no run to come
		}
	}
	l.mu.Unlock()
	l.running.Wait()
}
