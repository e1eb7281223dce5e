package supervisor

import (
	"context"
	"time"
)

// startupCheckInterval is the most time between two checks during the
// startup grace, so that a ready instance is registered at once even with
// a long heartbeat interval.
const startupCheckInterval = 250 * time.Millisecond

// supervise watches one run of the process until it must end: it exits,
// fails its checks, is due for recycling, or the instance is stopped. It
// registers the instance while it is healthy and deregisters it at the
// first failed check.
func (in *instance) supervise(proc *process, startedAt time.Time) endReason {
	// runCtx ends when the instance is stopped or the process exits, so
	// that a check or a registration in progress does not delay either.
	runCtx, cancel := context.WithCancel(in.ctx)
	defer cancel()
	stopWatching := context.AfterFunc(proc.exited, cancel)
	defer stopWatching()

	if len(in.services) == 0 {
		return in.superviseUnchecked(runCtx, proc)
	}
	hb := in.shared.config.Load().Heartbeat
	probe, err := newInstanceProbe(in.port, hb)
	if err != nil {
		in.log.Error("supervisor: cannot check the instance", "error", err)
		return endUnhealthy
	}
	defer probe.close()

	failures := 0
	inGrace := true
	postponed := false
	next := time.NewTimer(0) // the first check at once
	defer next.Stop()
	for {
		select {
		case <-runCtx.Done():
			return in.endReason(proc)
		case <-next.C:
		}
		hb = in.shared.config.Load().Heartbeat
		if inGrace && in.shared.now().Sub(startedAt) >= hb.StartupGrace {
			inGrace = false
		}
		health, err := probe.check(runCtx, in.services, hb.Timeout)
		if runCtx.Err() != nil {
			return in.endReason(proc)
		}
		in.update(func(s *InstanceStatus) { s.Health = health })
		if err == nil {
			if inGrace || failures > 0 {
				in.log.Info("supervisor: instance is healthy", "pid", proc.pid)
			}
			inGrace, failures = false, 0
			in.register(runCtx, hb.Timeout)
			if in.dueForRecycling(startedAt) {
				if in.idle(runCtx, probe, hb.Timeout, &postponed) {
					in.log.Info("supervisor: recycling the instance", "pid", proc.pid,
						"age", in.shared.now().Sub(startedAt).Round(time.Millisecond), "recycle_after", in.recycleAfter)
					return endRecycled
				}
				if runCtx.Err() != nil {
					return in.endReason(proc)
				}
			}
		} else {
			if inGrace {
				in.setState(StateStarting)
			} else {
				failures++
				in.setState(StateUnhealthy)
				in.log.Warn("supervisor: health check failed", "pid", proc.pid, "health", health,
					"failures", failures, "of", hb.Failures, "error", err)
			}
			in.deregister("a health check failed")
			if failures >= hb.Failures {
				in.log.Warn("supervisor: restarting the unhealthy instance", "pid", proc.pid, "failures", failures)
				return endUnhealthy
			}
		}
		wait := hb.Interval
		if inGrace {
			wait = min(wait, startupCheckInterval)
		}
		next.Reset(wait)
	}
}

// superviseUnchecked watches a process that has no service names to check:
// it runs until it exits, the instance stops, or recycle_after passes.
func (in *instance) superviseUnchecked(runCtx context.Context, proc *process) endReason {
	in.setState(StateRunning)
	var recycle <-chan time.Time
	if in.recycleAfter > 0 {
		t := time.NewTimer(in.recycleAfter)
		defer t.Stop()
		recycle = t.C
	}
	select {
	case <-runCtx.Done():
		return in.endReason(proc)
	case <-recycle:
		in.log.Info("supervisor: recycling the instance", "pid", proc.pid, "recycle_after", in.recycleAfter)
		return endRecycled
	}
}

// endReason tells an exit from a stop once runCtx has ended.
func (in *instance) endReason(proc *process) endReason {
	if proc.exited.Err() != nil {
		return endExited
	}
	return endStopped
}

func (in *instance) dueForRecycling(startedAt time.Time) bool {
	return in.recycleAfter > 0 && in.shared.now().Sub(startedAt) >= in.recycleAfter
}

// idle reports whether the healthy instance serves no request: it says so
// with ReportLoad, or it does not report its load (its health is all
// there is to go by). While it is busy, the first answer of the run is
// logged at info level and postponed set.
func (in *instance) idle(ctx context.Context, probe *instanceProbe, timeout time.Duration, postponed *bool) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n, reported, err := probe.requestsInFlight(ctx, in.services[0])
	switch {
	case err != nil:
		in.log.Debug("supervisor: recycling postponed: the load is unknown", "error", err)
		return false
	case !reported:
		return true
	case n > 0:
		if *postponed {
			in.log.Debug("supervisor: recycling postponed: requests in flight", "requests", n)
		} else {
			in.log.Info("supervisor: recycling postponed: requests in flight", "requests", n)
			*postponed = true
		}
		return false
	}
	return true
}
