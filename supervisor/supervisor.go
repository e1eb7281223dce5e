package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"
)

// Options configure a Supervisor.
type Options struct {
	// Config is the supervisor section; it must be valid.
	Config Config
	// Registry receives the healthy instances. Default nil: nothing is
	// registered.
	Registry Registry
	// Logger receives starts, exits (with the last output lines of a
	// crash), restarts, crash loops, recycling and registrations. Default
	// slog.Default().
	Logger *slog.Logger

	// now and rand replace the clock and the randomness of backoffs in
	// tests. Default time.Now and math/rand/v2.Float64.
	now  func() time.Time
	rand func() float64
}

// Supervisor keeps the instances of the configured agents running,
// healthy and registered. Start, Reload and Stop may be called from any
// goroutine and are run one at a time; Status never waits for them.
type Supervisor struct {
	shared *shared

	// lifecycle orders Start, Reload and Stop; it guards cfg, started,
	// stopped, ctx and cancel.
	lifecycle sync.Mutex
	cfg       Config
	started   bool
	stopped   bool
	ctx       context.Context // parent of the instances' contexts
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the instances' goroutines

	mu     sync.Mutex // guards agents
	agents map[string]*agentRun
}

// New returns a Supervisor of opts.Config; Start starts its agents.
func New(opts Options) (*Supervisor, error) {
	if err := errors.Join(opts.Config.Validate(), opts.Config.CheckFiles()); err != nil {
		return nil, err
	}
	sh := &shared{logger: opts.Logger, registry: opts.Registry, now: opts.now, rand: opts.rand}
	if sh.logger == nil {
		sh.logger = slog.Default()
	}
	if sh.now == nil {
		sh.now = time.Now
	}
	if sh.rand == nil {
		sh.rand = rand.Float64
	}
	cfg := opts.Config
	sh.config.Store(&cfg)
	s := &Supervisor{shared: sh, cfg: cfg, agents: map[string]*agentRun{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start starts every agent's instances and returns once each has been
// started (or has failed to start: it is then retried with backoff). It
// refuses to start when a configured port is in use: a process there is
// not one of ours, and is never adopted. When it fails, nothing is left
// running.
func (s *Supervisor) Start(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	switch {
	case s.stopped:
		return errors.New("supervisor: starting: the supervisor was stopped; create a new one")
	case s.started:
		return errors.New("supervisor: starting: already started")
	}
	cfg := s.cfg
	for i, agent := range cfg.Agents {
		if err := checkAgentPorts(&cfg, i, agent, nil); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return fmt.Errorf("supervisor.log_dir: %w", err)
	}
	avoid := configuredPorts(cfg.Agents)
	runs := map[string]*agentRun{}
	for i, agent := range cfg.Agents {
		run, err := s.newAgentRun(s.ctx, &cfg, fmt.Sprintf("supervisor.agents[%d]", i), agent, nil, avoid)
		if err != nil {
			for _, run := range runs {
				run.discard()
			}
			return err
		}
		runs[agent.Name] = run
	}
	s.mu.Lock()
	s.agents = runs
	s.mu.Unlock()
	s.started = true
	if err := s.launch(ctx, runs); err != nil {
		s.stopped = true
		_ = s.stopAll(context.Background())
		return fmt.Errorf("supervisor: starting: %w", err)
	}
	s.shared.logger.Info("supervisor: started", "agents", len(runs), "instances", countInstances(runs))
	return nil
}

// launch starts the goroutines of runs' instances and waits for their
// first start.
func (s *Supervisor) launch(ctx context.Context, runs map[string]*agentRun) error {
	for _, run := range runs {
		for _, in := range run.instances {
			s.wg.Go(in.run)
		}
	}
	for _, run := range runs {
		for _, in := range run.instances {
			select {
			case <-in.launched:
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s-%d to start: %w", in.agent, in.index, ctx.Err())
			}
		}
	}
	return nil
}

// Stop stops every instance: deregistered first, then asked to stop
// (SIGTERM to its process group; CTRL_BREAK on Windows), then killed with
// what is left of its group after stop_timeout. If ctx ends first, the
// processes left are killed at once. Stop returns when every process is
// gone; later calls do nothing.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	if !s.started {
		s.cancel()
		return nil
	}
	s.shared.logger.Info("supervisor: stopping")
	err := s.stopAll(ctx)
	s.shared.logger.Info("supervisor: stopped")
	return err
}

// stopAll stops every instance and waits for their goroutines.
func (s *Supervisor) stopAll(ctx context.Context) error {
	s.mu.Lock()
	var all []*instance
	for _, run := range s.agents {
		all = append(all, run.instances...)
	}
	s.mu.Unlock()
	err := stopInstances(ctx, all)
	s.cancel()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("supervisor: stopping: %w", err)
	}
	return nil
}

// stopInstances stops instances all at once and waits for them. When ctx
// ends first, the processes left are killed.
func stopInstances(ctx context.Context, instances []*instance) error {
	for _, in := range instances {
		in.stop()
	}
	var err error
	for _, in := range instances {
		select {
		case <-in.done:
			continue
		case <-ctx.Done():
		}
		err = fmt.Errorf("%w; the processes left were killed", ctx.Err())
		for _, in := range instances {
			in.kill()
		}
		<-in.done
	}
	return err
}

// Status returns a snapshot of every instance, sorted by agent and
// instance.
func (s *Supervisor) Status() []InstanceStatus {
	s.mu.Lock()
	var all []*instance
	for _, run := range s.agents {
		all = append(all, run.instances...)
	}
	s.mu.Unlock()
	out := make([]InstanceStatus, 0, len(all))
	for _, in := range all {
		out = append(out, in.snapshot())
	}
	slices.SortFunc(out, func(a, b InstanceStatus) int {
		return cmp.Or(cmp.Compare(a.Agent, b.Agent), cmp.Compare(a.Instance, b.Instance))
	})
	return out
}

func countInstances(runs map[string]*agentRun) int {
	n := 0
	for _, run := range runs {
		n += len(run.instances)
	}
	return n
}
