package supervisor

import (
	"reflect"
	"time"
)

// Config is the `supervisor:` section.
type Config struct {
	// Agents are the programs to keep running. Default none.
	Agents []AgentConfig `koanf:"agents"`
	// HostName is substituted for {HostName} and is the host of the
	// addresses registered for the instances: the name or address other
	// machines reach this one by. Default "127.0.0.1".
	HostName string `koanf:"host_name"`
	// LogDir receives one log file per instance, {agent}-{instance}.log,
	// with the instance's stdout and stderr. Created if missing. Default
	// "data/logs".
	LogDir string `koanf:"log_dir"`
	// LogMaxSize is the size in bytes at which a log file is rotated to
	// .1 (and .1 to .2, ...). Default 10 MiB.
	LogMaxSize int64 `koanf:"log_max_size"`
	// LogMaxFiles is how many rotated files (.1 to .N) are kept; 0 keeps
	// none (the file starts over). Default 3.
	LogMaxFiles int `koanf:"log_max_files"`
	// Heartbeat is how instances are health-checked.
	Heartbeat HeartbeatConfig `koanf:"heartbeat"`
	// Restart is how instances that exit or fail are started again.
	Restart RestartConfig `koanf:"restart"`
	// StopTimeout is how long a stopping instance's process group has
	// between the polite request (SIGTERM; CTRL_BREAK on Windows) and the
	// kill. Default 10s.
	StopTimeout time.Duration `koanf:"stop_timeout"`
}

// HeartbeatConfig is the `supervisor.heartbeat:` section. An instance is
// checked with grpc.health.v1 Check, on 127.0.0.1:{Port}, for each of its
// agent's service_names; agents without service_names are not checked
// (a running process is all they promise) and not registered.
type HeartbeatConfig struct {
	// Interval between two checks of an instance. Default 5s.
	Interval time.Duration `koanf:"interval"`
	// Timeout bounds each Check call (one per service name), each
	// ReportLoad call of the recycling and each registration. Default 2s.
	Timeout time.Duration `koanf:"timeout"`
	// StartupGrace is how long after a start failed checks are not
	// counted: the process is still starting. The grace ends early at the
	// first check that passes. Meanwhile the checks run every
	// min(interval, 250ms) so that a ready instance is registered at once.
	// Default 10s.
	StartupGrace time.Duration `koanf:"startup_grace"`
	// Failures is how many failed checks in a row restart an instance. It
	// is deregistered at the first one. Default 3.
	Failures int `koanf:"failures"`
}

// RestartConfig is the `supervisor.restart:` section.
type RestartConfig struct {
	// MinBackoff is the wait before the first restart after an exit or
	// failure. Default 1s.
	MinBackoff time.Duration `koanf:"min_backoff"`
	// MaxBackoff caps the wait, which doubles at each restart in a row;
	// each wait is drawn at random between MinBackoff and the doubled
	// step (full jitter). Default 1m.
	MaxBackoff time.Duration `koanf:"max_backoff"`
	// CrashLoopStarts starts within CrashLoopWindow, none of them lasting
	// StableAfter, make an instance fatal: it is not restarted until
	// FatalRetry has passed. Default 5.
	CrashLoopStarts int `koanf:"crash_loop_starts"`
	// CrashLoopWindow: see CrashLoopStarts. Default 1m.
	CrashLoopWindow time.Duration `koanf:"crash_loop_window"`
	// FatalRetry is how long a fatal instance waits before it is started
	// again with fresh counters; 0 leaves it fatal until a reload or a
	// restart of quaestor. Default 5m.
	FatalRetry time.Duration `koanf:"fatal_retry"`
	// StableAfter is how long a run must last to reset the backoff and
	// the crash-loop count. Default 1m.
	StableAfter time.Duration `koanf:"stable_after"`
}

// AgentConfig is one entry of `supervisor.agents`: a program run as one or
// more instances, numbered from 0.
type AgentConfig struct {
	// Name identifies the agent in logs, log file names and registered
	// instance IDs ({name}-{instance}). Required, unique; letters, digits,
	// '.', '_' and '-'.
	Name string `koanf:"name"`
	// Executable is the program: a path (relative paths are from
	// quaestor's working directory, not Dir) or a name looked up in PATH.
	// Required.
	Executable string `koanf:"executable"`
	// Args are the program's arguments; {Port}, {HostName} and {Instance}
	// are replaced by the instance's values. Default none.
	Args []string `koanf:"args"`
	// Env is added to quaestor's own environment; values take the same
	// placeholders as Args. Default none.
	Env map[string]string `koanf:"env"`
	// Dir is the working directory of the processes. Default quaestor's.
	Dir string `koanf:"dir"`
	// Instances is how many processes run; 0 means 1. Default 1.
	Instances int `koanf:"instances"`
	// Ports are the instances' ports, one per instance in order. Omitted:
	// a free port is chosen for each instance when it is first started
	// and kept across its restarts.
	Ports []int `koanf:"ports"`
	// ServiceNames are checked with grpc.health.v1 (an instance whose
	// server does not know a name is checked with "" for it) and, while
	// every one is SERVING, registered with the instance's address.
	// Default none: the instances are neither checked nor registered.
	ServiceNames []string `koanf:"service_names"`
	// RecycleAfter restarts an instance that has run this long, as soon
	// as it reports no request in flight (Quaestor.LoadReporting
	// ReportLoad current_requests == 0; an instance that does not serve
	// that service is recycled while it is healthy; one without
	// service_names when the time has come). 0 never recycles; else at
	// least 100ms. Default 0.
	RecycleAfter time.Duration `koanf:"recycle_after"`
}

// Defaults.
const (
	DefaultHostName    = "127.0.0.1"
	DefaultLogDir      = "data/logs"
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 3
	DefaultStopTimeout = 10 * time.Second
)

// DefaultConfig returns the supervisor section's defaults, with no agents.
func DefaultConfig() Config {
	return Config{
		HostName:    DefaultHostName,
		LogDir:      DefaultLogDir,
		LogMaxSize:  DefaultLogMaxSize,
		LogMaxFiles: DefaultLogMaxFiles,
		Heartbeat: HeartbeatConfig{
			Interval:     5 * time.Second,
			Timeout:      2 * time.Second,
			StartupGrace: 10 * time.Second,
			Failures:     3,
		},
		Restart: RestartConfig{
			MinBackoff:      time.Second,
			MaxBackoff:      time.Minute,
			CrashLoopStarts: 5,
			CrashLoopWindow: time.Minute,
			FatalRetry:      5 * time.Minute,
			StableAfter:     time.Minute,
		},
		StopTimeout: DefaultStopTimeout,
	}
}

// instanceCount is the number of instances the agent runs.
func (a AgentConfig) instanceCount() int { return max(a.Instances, 1) }

// sameAgent reports whether a and b run the same processes: equal after
// defaults, with empty and omitted lists and maps alike.
func sameAgent(a, b AgentConfig) bool {
	return reflect.DeepEqual(a.normalized(), b.normalized())
}

func (a AgentConfig) normalized() AgentConfig {
	a.Instances = a.instanceCount()
	if len(a.Args) == 0 {
		a.Args = nil
	}
	if len(a.Env) == 0 {
		a.Env = nil
	}
	if len(a.Ports) == 0 {
		a.Ports = nil
	}
	if len(a.ServiceNames) == 0 {
		a.ServiceNames = nil
	}
	return a
}

// restartsEveryAgent reports whether going from a to b changes what every
// process runs with (its host name, its log file), so that a reload
// restarts every agent. The other settings apply to running instances.
func restartsEveryAgent(a, b Config) bool {
	return a.HostName != b.HostName || a.LogDir != b.LogDir
}
