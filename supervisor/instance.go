package supervisor

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// shared is what every instance shares with its supervisor.
type shared struct {
	logger   *slog.Logger
	registry Registry // nil: nothing is registered
	// config is the current configuration: heartbeat, restart and
	// stop_timeout are read from it at each use, so a reload changes
	// them for running instances too.
	config atomic.Pointer[Config]
	now    func() time.Time
	rand   func() float64
}

// instance is one process slot of an agent. One goroutine, run, owns it:
// it starts the process, checks it, registers it, and restarts it; it
// alone changes the instance, and other goroutines only read its status.
type instance struct {
	shared       *shared
	agent        string
	index        int
	port         int
	spec         processSpec
	services     []string
	recycleAfter time.Duration
	reg          registration
	output       *instanceOutput
	log          *slog.Logger

	ctx      context.Context // cancelled to stop the instance
	cancel   context.CancelFunc
	killNow  chan struct{} // closed to skip what is left of stop_timeout
	killOnce sync.Once
	launched chan struct{} // closed once the first start was tried
	done     chan struct{} // closed when run returns

	mu     sync.Mutex
	status InstanceStatus
}

// endReason is why a run of the process ended.
type endReason int

const (
	endExited      endReason = iota // it exited on its own
	endFailedStart                  // it could not be started
	endUnhealthy                    // it failed heartbeat.failures checks in a row
	endRecycled                     // it was older than recycle_after and idle
	endStopped                      // the instance is being stopped
)

// run keeps the instance's process running until the instance is stopped.
func (in *instance) run() {
	defer close(in.done)
	defer in.output.close()
	var launchOnce sync.Once
	launched := func() { launchOnce.Do(func() { close(in.launched) }) }
	defer launched()

	policy := restartPolicy{rand: in.shared.rand}
	for in.ctx.Err() == nil {
		startedAt, reason := in.runOnce(&policy, launched)
		if in.ctx.Err() != nil {
			break
		}
		if reason == endRecycled {
			policy.reset()
			continue
		}
		cfg := in.shared.config.Load()
		wait, fatal := policy.afterRun(cfg.Restart, startedAt, in.shared.now())
		if fatal {
			in.setState(StateFatal)
			in.log.Error("supervisor: instance is crash-looping; giving up for now",
				"starts", cfg.Restart.CrashLoopStarts, "within", cfg.Restart.CrashLoopWindow,
				"retry_in", cfg.Restart.FatalRetry, "last_exit", in.snapshot().LastExit, "last_lines", in.output.lines.Lines())
			if !in.sleep(cfg.Restart.FatalRetry) {
				break
			}
			in.log.Info("supervisor: retrying the fatal instance")
			policy.reset()
			continue
		}
		in.setState(StateBackoff)
		in.log.Info("supervisor: restarting after a backoff", "backoff", wait.Round(time.Millisecond))
		if !in.sleep(wait) {
			break
		}
	}
	in.update(func(s *InstanceStatus) { s.State, s.Health = StateStopped, "" })
}

// runOnce starts the process once and supervises it until it ends (or
// cannot start). It returns when the run started and why it ended, with
// the process gone and the instance deregistered.
func (in *instance) runOnce(policy *restartPolicy, launched func()) (time.Time, endReason) {
	defer launched()
	startedAt := in.shared.now()
	policy.started(startedAt)
	in.update(func(s *InstanceStatus) {
		if !s.StartedAt.IsZero() {
			s.Restarts++
		}
		s.State, s.Health, s.StartedAt = StateStarting, "", startedAt
	})
	in.output.lines.reset()
	// Never start next to a process someone else started on our port:
	// its health checks would pass for ours.
	if err := checkPortFree(in.port); err != nil {
		in.failedStart(err)
		return startedAt, endFailedStart
	}
	proc, err := startProcess(in.spec, in.output)
	if err != nil {
		in.failedStart(err)
		return startedAt, endFailedStart
	}
	in.update(func(s *InstanceStatus) { s.PID = proc.pid })
	in.log.Info("supervisor: started", "pid", proc.pid, "port", in.port, "restarts", in.snapshot().Restarts)
	launched()

	reason := in.supervise(proc, startedAt)
	// Deregistered before the process is stopped, so that no new call is
	// sent to it meanwhile.
	in.deregister("the process is ending")
	cfg := in.shared.config.Load()
	if reason == endExited {
		proc.cleanUp(cfg.StopTimeout, in.killNow)
	} else {
		in.setState(StateStopping)
		proc.stop(cfg.StopTimeout, in.killNow)
	}
	proc.close()
	exitedAt := in.shared.now()
	in.update(func(s *InstanceStatus) {
		s.PID, s.Health, s.LastExit, s.LastExitAt = 0, "", proc.exitStatus, exitedAt
	})
	ran := exitedAt.Sub(startedAt).Round(time.Millisecond)
	if reason == endExited {
		in.log.Warn("supervisor: process exited", "pid", proc.pid, "status", proc.exitStatus,
			"ran", ran, "last_lines", in.output.lines.Lines())
	} else {
		in.log.Info("supervisor: process stopped", "pid", proc.pid, "status", proc.exitStatus, "ran", ran)
	}
	return startedAt, reason
}

// failedStart records a start that failed before the process ran.
func (in *instance) failedStart(err error) {
	now := in.shared.now()
	in.update(func(s *InstanceStatus) { s.PID, s.LastExit, s.LastExitAt = 0, err.Error(), now })
	in.log.Error("supervisor: cannot start the process", "port", in.port, "error", err)
}

// register registers the healthy instance, unless it is already.
func (in *instance) register(ctx context.Context, timeout time.Duration) {
	was := in.reg.registered
	if err := in.reg.register(ctx, timeout); err != nil {
		in.log.Warn("supervisor: registering failed; retrying at the next check", "addr", in.reg.addr, "error", err)
	} else if !was && in.reg.registered {
		in.log.Info("supervisor: registered", "services", in.services, "addr", in.reg.addr, "id", in.reg.id)
	}
	registered := in.reg.registered
	in.update(func(s *InstanceStatus) { s.State, s.Registered = StateRunning, registered })
}

// deregister removes the instance from the registry, if it is there.
func (in *instance) deregister(why string) {
	if !in.reg.claimed {
		return
	}
	if err := in.reg.deregister(in.ctx); err != nil {
		in.log.Warn("supervisor: deregistering failed", "reason", why, "error", err)
	} else {
		in.log.Info("supervisor: deregistered", "reason", why, "services", in.services, "id", in.reg.id)
	}
	in.update(func(s *InstanceStatus) { s.Registered = false })
}

// sleep waits d, or until the instance is stopped; it reports whether to
// go on. d == 0 waits for the stop.
func (in *instance) sleep(d time.Duration) bool {
	if d == 0 {
		<-in.ctx.Done()
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-in.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// stop asks run to stop the instance; it returns at once.
func (in *instance) stop() { in.cancel() }

// kill makes a stop in progress kill the processes left now.
func (in *instance) kill() { in.killOnce.Do(func() { close(in.killNow) }) }

func (in *instance) setState(state string) {
	in.update(func(s *InstanceStatus) { s.State = state })
}

func (in *instance) update(change func(*InstanceStatus)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	change(&in.status)
}

// snapshot returns the instance's status.
func (in *instance) snapshot() InstanceStatus {
	in.mu.Lock()
	s := in.status
	in.mu.Unlock()
	s.LastLines = in.output.lines.Lines()
	return s
}
