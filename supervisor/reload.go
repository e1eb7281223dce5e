package supervisor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
)

// Reload applies cfg. The agents it adds are started, those it removes are
// stopped, and those whose settings changed (compared in full, after
// defaults) are stopped and started again; the others keep running, the
// same processes. A change of heartbeat, restart, stop_timeout or the log
// limits applies to the running instances; a change of host_name or
// log_dir changes every agent's processes, so it restarts them all. An
// agent without ports keeps its instances' ports across a change.
//
// Reload changes nothing when cfg is invalid or when a port it adds is in
// use, other than by an instance it stops. It returns once the stopped
// instances are gone and the new ones have been started.
func (s *Supervisor) Reload(cfg Config) error {
	if err := errors.Join(cfg.Validate(), cfg.CheckFiles()); err != nil {
		return err
	}
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if !s.started || s.stopped {
		return errors.New("supervisor: reloading: the supervisor is not running")
	}
	s.mu.Lock()
	current := maps.Clone(s.agents)
	s.mu.Unlock()
	plan := planReload(current, s.cfg, cfg)
	if err := plan.checkPorts(current, &cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return fmt.Errorf("supervisor.log_dir: %w", err)
	}

	s.cfg = cfg
	s.shared.config.Store(&cfg)
	for _, name := range plan.kept {
		for _, in := range current[name].instances {
			in.output.file.setLimits(cfg.LogMaxSize, cfg.LogMaxFiles)
		}
	}
	var stopping []*instance
	for _, name := range slices.Concat(plan.removed, plan.changed) {
		stopping = append(stopping, current[name].instances...)
	}
	_ = stopInstances(context.Background(), stopping)
	s.mu.Lock()
	for _, name := range slices.Concat(plan.removed, plan.changed) {
		delete(s.agents, name)
	}
	s.mu.Unlock()

	avoid := configuredPorts(cfg.Agents)
	for _, name := range plan.kept {
		for _, port := range current[name].ports() {
			avoid[port] = true
		}
	}
	runs := map[string]*agentRun{}
	var errs []error
	for i, agent := range cfg.Agents {
		if slices.Contains(plan.kept, agent.Name) {
			continue
		}
		var reuse []int
		if old, ok := current[agent.Name]; ok && len(agent.Ports) == 0 && len(old.cfg.Ports) == 0 {
			reuse = old.ports()
		}
		run, err := s.newAgentRun(s.ctx, &cfg, fmt.Sprintf("supervisor.agents[%d]", i), agent, reuse, avoid)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		runs[agent.Name] = run
	}
	s.mu.Lock()
	maps.Copy(s.agents, runs)
	s.mu.Unlock()
	_ = s.launch(context.Background(), runs)
	s.shared.logger.Info("supervisor: reloaded", "added", plan.added, "removed", plan.removed,
		"changed", plan.changed, "unchanged", plan.kept)
	if len(errs) > 0 {
		return fmt.Errorf("supervisor: reloading: %w", errors.Join(errs...))
	}
	return nil
}

// reloadPlan sorts the agents of a reload by what happens to them.
type reloadPlan struct {
	added, removed, changed, kept []string
}

func planReload(current map[string]*agentRun, from, to Config) reloadPlan {
	var plan reloadPlan
	everyAgent := restartsEveryAgent(from, to)
	wanted := map[string]bool{}
	for _, agent := range to.Agents {
		wanted[agent.Name] = true
		run, ok := current[agent.Name]
		switch {
		case !ok:
			plan.added = append(plan.added, agent.Name)
		case everyAgent || !sameAgent(run.cfg, agent):
			plan.changed = append(plan.changed, agent.Name)
		default:
			plan.kept = append(plan.kept, agent.Name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(current)) {
		if !wanted[name] {
			plan.removed = append(plan.removed, name)
		}
	}
	return plan
}

// checkPorts checks the ports configured by the agents the plan starts:
// not held by an instance that keeps running, and free unless held by an
// instance the plan stops.
func (plan reloadPlan) checkPorts(current map[string]*agentRun, cfg *Config) error {
	ours := map[int]bool{}
	keptPorts := map[int]string{}
	for name, run := range current {
		for _, in := range run.instances {
			if slices.Contains(plan.kept, name) {
				keptPorts[in.port] = fmt.Sprintf("%s-%d", in.agent, in.index)
			} else {
				ours[in.port] = true
			}
		}
	}
	for i, agent := range cfg.Agents {
		if slices.Contains(plan.kept, agent.Name) {
			continue
		}
		for j, port := range agent.Ports {
			if id, ok := keptPorts[port]; ok {
				return fmt.Errorf("supervisor.agents[%d].ports[%d]: port %d is the port of instance %s, which keeps running", i, j, port, id)
			}
		}
		if err := checkAgentPorts(cfg, i, agent, ours); err != nil {
			return err
		}
	}
	return nil
}
