package supervisor

import "time"

// restartPolicy decides, for one instance, how long to wait before the
// next start and when the instance is crash-looping. It keeps no timers
// of its own: its caller passes the time, so tests need no clock.
type restartPolicy struct {
	// rand returns a number in [0, 1), for the jitter.
	rand func() float64
	// starts are the recent start times, oldest first.
	starts []time.Time
	// step counts the restarts in a row since the last stable run.
	step int
}

// started records a start (a failed one too) at now.
func (p *restartPolicy) started(now time.Time) {
	p.starts = append(p.starts, now)
}

// reset forgets every start and the backoff.
func (p *restartPolicy) reset() {
	p.starts = p.starts[:0]
	p.step = 0
}

// afterRun decides what follows a run that started at startedAt and ended
// at now, on its own or because it failed its health checks: fatal when
// the instance is crash-looping, else the wait before the next start.
func (p *restartPolicy) afterRun(cfg RestartConfig, startedAt, now time.Time) (wait time.Duration, fatal bool) {
	if now.Sub(startedAt) >= cfg.StableAfter {
		p.reset()
	}
	cutoff := now.Add(-cfg.CrashLoopWindow)
	kept := p.starts[:0]
	for _, t := range p.starts {
		if t.After(cutoff) {
			kept = append(kept, t)
		}
	}
	p.starts = kept
	if len(p.starts) >= cfg.CrashLoopStarts {
		return 0, true
	}
	wait = backoff(cfg.MinBackoff, cfg.MaxBackoff, p.step, p.rand())
	p.step++
	return wait, false
}

// backoff returns the wait before restart number step+1 in a row: drawn
// with r in [0, 1) between lo and lo·2^step, capped at hi.
func backoff(lo, hi time.Duration, step int, r float64) time.Duration {
	ceiling := lo
	for range step {
		if ceiling > hi/2 {
			ceiling = hi
			break
		}
		ceiling *= 2
	}
	ceiling = min(ceiling, hi)
	return lo + time.Duration(r*float64(ceiling-lo))
}
