package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/quaestor-go/quaestor/routing"
)

var agentNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// minRecycleAfter is the shortest recycle_after: recycling is a restart
// without backoff, and faster it would be a restart loop.
const minRecycleAfter = 100 * time.Millisecond

// Validate returns an error naming the first key with a bad value. It does
// not look at the file system, so that every quaestor command can load a
// configuration whose workers live elsewhere; New and Reload also check
// that executables and working directories exist (CheckFiles).
func (c Config) Validate() error {
	if c.HostName == "" {
		return fmt.Errorf("supervisor.host_name: empty, want the name or address this machine is reached by, e.g. %s", DefaultHostName)
	}
	if ip := net.ParseIP(c.HostName); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("supervisor.host_name: %q is not an address others can reach; name this machine (or use %s)", c.HostName, DefaultHostName)
	}
	if strings.ContainsAny(c.HostName, "/ \t\r\n") {
		return fmt.Errorf("supervisor.host_name: %q is not a host name", c.HostName)
	}
	if c.LogDir == "" {
		return fmt.Errorf("supervisor.log_dir: empty, want a directory for the instances' logs, e.g. %s", DefaultLogDir)
	}
	if c.LogMaxSize <= 0 {
		return fmt.Errorf("supervisor.log_max_size: %d, want more than 0 bytes", c.LogMaxSize)
	}
	if c.LogMaxFiles < 0 {
		return fmt.Errorf("supervisor.log_max_files: %d is negative", c.LogMaxFiles)
	}
	if err := c.Heartbeat.validate(); err != nil {
		return err
	}
	if err := c.Restart.validate(); err != nil {
		return err
	}
	if err := positive("supervisor.stop_timeout", c.StopTimeout); err != nil {
		return err
	}
	names := make(map[string]int, len(c.Agents))
	ports := make(map[int]string)
	for i, agent := range c.Agents {
		key := fmt.Sprintf("supervisor.agents[%d]", i)
		if first, dup := names[agent.Name]; dup && agent.Name != "" {
			return fmt.Errorf("%s.name: %q is already the name of supervisor.agents[%d]", key, agent.Name, first)
		}
		names[agent.Name] = i
		if err := agent.validate(key); err != nil {
			return err
		}
		for j, port := range agent.Ports {
			portKey := fmt.Sprintf("%s.ports[%d]", key, j)
			if other, dup := ports[port]; dup {
				return fmt.Errorf("%s: port %d is also %s", portKey, port, other)
			}
			ports[port] = portKey
		}
	}
	return nil
}

func (h HeartbeatConfig) validate() error {
	if err := positive("supervisor.heartbeat.interval", h.Interval); err != nil {
		return err
	}
	if err := positive("supervisor.heartbeat.timeout", h.Timeout); err != nil {
		return err
	}
	if h.StartupGrace < 0 {
		return fmt.Errorf("supervisor.heartbeat.startup_grace: %s is negative", h.StartupGrace)
	}
	if h.Failures < 1 {
		return fmt.Errorf("supervisor.heartbeat.failures: %d, want at least 1", h.Failures)
	}
	return nil
}

func (r RestartConfig) validate() error {
	if err := positive("supervisor.restart.min_backoff", r.MinBackoff); err != nil {
		return err
	}
	if r.MaxBackoff < r.MinBackoff {
		return fmt.Errorf("supervisor.restart.max_backoff: %s is below supervisor.restart.min_backoff (%s)", r.MaxBackoff, r.MinBackoff)
	}
	if r.CrashLoopStarts < 1 {
		return fmt.Errorf("supervisor.restart.crash_loop_starts: %d, want at least 1", r.CrashLoopStarts)
	}
	if err := positive("supervisor.restart.crash_loop_window", r.CrashLoopWindow); err != nil {
		return err
	}
	if r.FatalRetry < 0 {
		return fmt.Errorf("supervisor.restart.fatal_retry: %s is negative (0 never retries)", r.FatalRetry)
	}
	return positive("supervisor.restart.stable_after", r.StableAfter)
}

func (a AgentConfig) validate(key string) error {
	if a.Name == "" {
		return fmt.Errorf("%s.name: empty, every agent needs a name", key)
	}
	if !agentNamePattern.MatchString(a.Name) {
		return fmt.Errorf("%s.name: %q, want letters, digits, '.', '_' and '-' (it names log files and instance IDs)", key, a.Name)
	}
	if a.Executable == "" {
		return fmt.Errorf("%s.executable: empty, want the program to run", key)
	}
	for i, arg := range a.Args {
		if err := checkPlaceholders(arg); err != nil {
			return fmt.Errorf("%s.args[%d]: %w", key, i, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(a.Env)) {
		value := a.Env[name]
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return fmt.Errorf("%s.env: %q is not a variable name", key, name)
		}
		if err := checkPlaceholders(value); err != nil {
			return fmt.Errorf("%s.env.%s: %w", key, name, err)
		}
	}
	if a.Instances < 0 {
		return fmt.Errorf("%s.instances: %d is negative", key, a.Instances)
	}
	if len(a.Ports) > 0 && len(a.Ports) != a.instanceCount() {
		return fmt.Errorf("%s.ports: %d ports for %d instances", key, len(a.Ports), a.instanceCount())
	}
	for i, port := range a.Ports {
		if port < 1 || port > 65535 {
			return fmt.Errorf("%s.ports[%d]: %d, want 1 to 65535", key, i, port)
		}
	}
	for i, service := range a.ServiceNames {
		if err := routing.ValidateServiceName(service); err != nil {
			return fmt.Errorf("%s.service_names[%d]: %w", key, i, err)
		}
		if slices.Contains(a.ServiceNames[:i], service) {
			return fmt.Errorf("%s.service_names[%d]: %q is listed twice", key, i, service)
		}
	}
	if a.RecycleAfter < 0 || a.RecycleAfter > 0 && a.RecycleAfter < minRecycleAfter {
		return fmt.Errorf("%s.recycle_after: %s, want 0 (never) or at least %s", key, a.RecycleAfter, minRecycleAfter)
	}
	return nil
}

// CheckFiles returns an error naming the first agent whose executable or
// working directory does not exist.
func (c Config) CheckFiles() error {
	for i, a := range c.Agents {
		key := fmt.Sprintf("supervisor.agents[%d]", i)
		if _, err := resolveExecutable(a.Executable); err != nil {
			return fmt.Errorf("%s.executable: %w", key, err)
		}
		if a.Dir == "" {
			continue
		}
		info, err := os.Stat(a.Dir)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s.dir: %q does not exist", key, a.Dir)
		}
		if err != nil {
			return fmt.Errorf("%s.dir: %w", key, err)
		}
		if !info.IsDir() {
			return fmt.Errorf("%s.dir: %q is not a directory", key, a.Dir)
		}
	}
	return nil
}

func positive(key string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s: %s, want more than 0", key, d)
	}
	return nil
}
