package supervisor

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/quaestor-go/quaestor/routing/registry"
)

// agentRun is an agent's instances.
type agentRun struct {
	cfg       AgentConfig
	instances []*instance
}

// newAgentRun prepares the instances of agent, the one at key in cfg,
// without starting them. An instance without a configured port takes its
// port from reuse (by index) if there is one, else a free one not in
// avoid; every port taken is added to avoid.
func (s *Supervisor) newAgentRun(ctx context.Context, cfg *Config, key string, agent AgentConfig, reuse []int, avoid map[int]bool) (*agentRun, error) {
	path, err := resolveExecutable(agent.Executable)
	if err != nil {
		return nil, fmt.Errorf("%s.executable: %w", key, err)
	}
	run := &agentRun{cfg: agent}
	for i := range agent.instanceCount() {
		port, err := instancePort(agent, i, reuse, avoid)
		if err != nil {
			run.discard()
			return nil, fmt.Errorf("%s: instance %d: %w", key, i, err)
		}
		avoid[port] = true
		in, err := s.newInstance(ctx, cfg, agent, path, i, port)
		if err != nil {
			run.discard()
			return nil, fmt.Errorf("%s: instance %d: %w", key, i, err)
		}
		run.instances = append(run.instances, in)
	}
	return run, nil
}

func instancePort(agent AgentConfig, i int, reuse []int, avoid map[int]bool) (int, error) {
	switch {
	case len(agent.Ports) > 0:
		return agent.Ports[i], nil
	case i < len(reuse) && reuse[i] != 0:
		return reuse[i], nil
	}
	return chooseFreePort(avoid)
}

func (s *Supervisor) newInstance(ctx context.Context, cfg *Config, agent AgentConfig, path string, index, port int) (*instance, error) {
	values := placeholders{Port: port, HostName: cfg.HostName, Instance: index}
	args := make([]string, len(agent.Args))
	for i, arg := range agent.Args {
		args[i] = values.expand(arg)
	}
	env := os.Environ()
	for _, name := range slices.Sorted(maps.Keys(agent.Env)) {
		env = append(env, name+"="+values.expand(agent.Env[name]))
	}
	logFile := filepath.Join(cfg.LogDir, fmt.Sprintf("%s-%d.log", agent.Name, index))
	file, err := openRotatingFile(logFile, cfg.LogMaxSize, cfg.LogMaxFiles)
	if err != nil {
		return nil, fmt.Errorf("supervisor.log_dir: %w", err)
	}
	log := s.shared.logger.With("agent", agent.Name, "instance", index)
	id := fmt.Sprintf("%s-%d", agent.Name, index)
	addr := net.JoinHostPort(cfg.HostName, strconv.Itoa(port))
	in := &instance{
		shared:       s.shared,
		agent:        agent.Name,
		index:        index,
		port:         port,
		spec:         processSpec{path: path, args: args, env: env, dir: agent.Dir},
		services:     slices.Clone(agent.ServiceNames),
		recycleAfter: agent.RecycleAfter,
		reg: registration{
			registry: s.shared.registry,
			services: slices.Clone(agent.ServiceNames),
			id:       id,
			addr:     addr,
			metadata: map[string]string{registry.MetaAgent: agent.Name, MetaHost: cfg.HostName},
		},
		output:   &instanceOutput{file: file, lines: newLineRing(lastLinesKept), log: log},
		log:      log,
		killNow:  make(chan struct{}),
		launched: make(chan struct{}),
		done:     make(chan struct{}),
		status: InstanceStatus{
			Agent:    agent.Name,
			Instance: index,
			State:    StateStarting,
			Port:     port,
			Addr:     addr,
			LogFile:  logFile,
		},
	}
	in.ctx, in.cancel = context.WithCancel(ctx)
	return in, nil
}

// discard frees the instances of a run that was never started.
func (r *agentRun) discard() {
	for _, in := range r.instances {
		in.cancel()
		_ = in.output.close()
	}
}

// ports returns the instances' ports, by index.
func (r *agentRun) ports() []int {
	ports := make([]int, len(r.instances))
	for i, in := range r.instances {
		ports[i] = in.port
	}
	return ports
}
