package supervisor

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	plainFile := filepath.Join(dir, "plain")
	if err := os.WriteFile(plainFile, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := func(name string) AgentConfig {
		return AgentConfig{Name: name, Executable: testBin}
	}
	with := func(change func(*Config)) Config {
		cfg := DefaultConfig()
		cfg.Agents = []AgentConfig{agent("worker")}
		change(&cfg)
		return cfg
	}
	withAgent := func(change func(*AgentConfig)) Config {
		return with(func(c *Config) { change(&c.Agents[0]) })
	}
	tests := []struct {
		name    string
		cfg     Config
		want    string
		skipWin bool
	}{
		{name: "defaults", cfg: DefaultConfig()},
		{name: "a full agent", cfg: withAgent(func(a *AgentConfig) {
			a.Args = []string{"--port", "{Port}", "--host={HostName}", "--name=w{Instance}", `--json={"a":1}`}
			a.Env = map[string]string{"WORKER_PORT": "{Port}"}
			a.Dir = dir
			a.Instances = 2
			a.Ports = []int{5161, 5162}
			a.ServiceNames = []string{"quaestor.example.v1.Echo", "pkg.Other"}
			a.RecycleAfter = time.Hour
		})},
		{name: "no host name", cfg: with(func(c *Config) { c.HostName = "" }),
			want: "supervisor.host_name: empty, want the name or address this machine is reached by, e.g. 127.0.0.1"},
		{name: "unspecified host", cfg: with(func(c *Config) { c.HostName = "0.0.0.0" }),
			want: `supervisor.host_name: "0.0.0.0" is not an address others can reach; name this machine (or use 127.0.0.1)`},
		{name: "no log dir", cfg: with(func(c *Config) { c.LogDir = "" }),
			want: "supervisor.log_dir: empty, want a directory for the instances' logs, e.g. data/logs"},
		{name: "log max size", cfg: with(func(c *Config) { c.LogMaxSize = 0 }),
			want: "supervisor.log_max_size: 0, want more than 0 bytes"},
		{name: "log max files", cfg: with(func(c *Config) { c.LogMaxFiles = -1 }),
			want: "supervisor.log_max_files: -1 is negative"},
		{name: "heartbeat interval", cfg: with(func(c *Config) { c.Heartbeat.Interval = 0 }),
			want: "supervisor.heartbeat.interval: 0s, want more than 0"},
		{name: "heartbeat failures", cfg: with(func(c *Config) { c.Heartbeat.Failures = 0 }),
			want: "supervisor.heartbeat.failures: 0, want at least 1"},
		{name: "startup grace", cfg: with(func(c *Config) { c.Heartbeat.StartupGrace = -time.Second }),
			want: "supervisor.heartbeat.startup_grace: -1s is negative"},
		{name: "max below min backoff", cfg: with(func(c *Config) { c.Restart.MaxBackoff = time.Millisecond }),
			want: "supervisor.restart.max_backoff: 1ms is below supervisor.restart.min_backoff (1s)"},
		{name: "crash loop starts", cfg: with(func(c *Config) { c.Restart.CrashLoopStarts = 0 }),
			want: "supervisor.restart.crash_loop_starts: 0, want at least 1"},
		{name: "fatal retry", cfg: with(func(c *Config) { c.Restart.FatalRetry = -time.Second }),
			want: "supervisor.restart.fatal_retry: -1s is negative (0 never retries)"},
		{name: "stop timeout", cfg: with(func(c *Config) { c.StopTimeout = 0 }),
			want: "supervisor.stop_timeout: 0s, want more than 0"},
		{name: "no name", cfg: withAgent(func(a *AgentConfig) { a.Name = "" }),
			want: "supervisor.agents[0].name: empty, every agent needs a name"},
		{name: "bad name", cfg: withAgent(func(a *AgentConfig) { a.Name = "my worker" }),
			want: `supervisor.agents[0].name: "my worker", want letters, digits, '.', '_' and '-' (it names log files and instance IDs)`},
		{name: "duplicate names", cfg: with(func(c *Config) { c.Agents = append(c.Agents, agent("other"), agent("worker")) }),
			want: `supervisor.agents[2].name: "worker" is already the name of supervisor.agents[0]`},
		{name: "no executable", cfg: withAgent(func(a *AgentConfig) { a.Executable = "" }),
			want: "supervisor.agents[0].executable: empty, want the program to run"},
		{name: "executable not found", cfg: withAgent(func(a *AgentConfig) { a.Executable = "./bin/x" }),
			want: `supervisor.agents[0].executable: "./bin/x" not found`},
		{name: "executable not in PATH", cfg: withAgent(func(a *AgentConfig) { a.Executable = "no-such-program-for-quaestor" }),
			want: `supervisor.agents[0].executable: "no-such-program-for-quaestor" not found in PATH`},
		{name: "executable is a directory", cfg: withAgent(func(a *AgentConfig) { a.Executable = dir }),
			want: `supervisor.agents[0].executable: "` + dir + `" is a directory`},
		{name: "executable not executable", skipWin: true, cfg: withAgent(func(a *AgentConfig) { a.Executable = plainFile }),
			want: `supervisor.agents[0].executable: "` + plainFile + `" is not executable (mode -rw-r--r--)`},
		{name: "unknown placeholder", cfg: withAgent(func(a *AgentConfig) { a.Args = []string{"--port", "--x={Prot}"} }),
			want: `supervisor.agents[0].args[1]: unknown placeholder {Prot} in "--x={Prot}" (want {Port}, {HostName} or {Instance})`},
		{name: "misspelt placeholder", cfg: withAgent(func(a *AgentConfig) { a.Args = []string{"{port}"} }),
			want: `supervisor.agents[0].args[0]: unknown placeholder {port} in "{port}" (want {Port}, {HostName} or {Instance}; did you mean {Port}?)`},
		{name: "placeholder in env", cfg: withAgent(func(a *AgentConfig) { a.Env = map[string]string{"A": "1", "B": "{Host}"} }),
			want: `supervisor.agents[0].env.B: unknown placeholder {Host} in "{Host}" (want {Port}, {HostName} or {Instance})`},
		{name: "env name", cfg: withAgent(func(a *AgentConfig) { a.Env = map[string]string{"A=B": "1"} }),
			want: `supervisor.agents[0].env: "A=B" is not a variable name`},
		{name: "missing dir", cfg: withAgent(func(a *AgentConfig) { a.Dir = filepath.Join(dir, "missing") }),
			want: `supervisor.agents[0].dir: "` + filepath.Join(dir, "missing") + `" does not exist`},
		{name: "dir is a file", cfg: withAgent(func(a *AgentConfig) { a.Dir = plainFile }),
			want: `supervisor.agents[0].dir: "` + plainFile + `" is not a directory`},
		{name: "negative instances", cfg: withAgent(func(a *AgentConfig) { a.Instances = -1 }),
			want: "supervisor.agents[0].instances: -1 is negative"},
		{name: "ports for instances", cfg: with(func(c *Config) {
			second := agent("second")
			second.Instances, second.Ports = 3, []int{5161, 5162}
			c.Agents = append(c.Agents, second)
		}), want: "supervisor.agents[1].ports: 2 ports for 3 instances"},
		{name: "one port for the default instance", cfg: withAgent(func(a *AgentConfig) { a.Ports = []int{5161, 5162} }),
			want: "supervisor.agents[0].ports: 2 ports for 1 instances"},
		{name: "port range", cfg: withAgent(func(a *AgentConfig) { a.Ports = []int{70000} }),
			want: "supervisor.agents[0].ports[0]: 70000, want 1 to 65535"},
		{name: "port twice", cfg: with(func(c *Config) {
			c.Agents[0].Ports = []int{5161}
			second := agent("second")
			second.Instances, second.Ports = 2, []int{5162, 5161}
			c.Agents = append(c.Agents, second)
		}), want: "supervisor.agents[1].ports[1]: port 5161 is also supervisor.agents[0].ports[0]"},
		{name: "service name", cfg: withAgent(func(a *AgentConfig) { a.ServiceNames = []string{"pkg/Svc"} }),
			want: `supervisor.agents[0].service_names[0]: service name "pkg/Svc" contains '/' or white space`},
		{name: "service twice", cfg: withAgent(func(a *AgentConfig) { a.ServiceNames = []string{"pkg.A", "pkg.A"} }),
			want: `supervisor.agents[0].service_names[1]: "pkg.A" is listed twice`},
		{name: "negative recycle after", cfg: withAgent(func(a *AgentConfig) { a.RecycleAfter = -time.Second }),
			want: "supervisor.agents[0].recycle_after: -1s, want 0 (never) or at least 100ms"},
		{name: "recycle after too short", cfg: withAgent(func(a *AgentConfig) { a.RecycleAfter = time.Millisecond }),
			want: "supervisor.agents[0].recycle_after: 1ms, want 0 (never) or at least 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skipWin && runtime.GOOS == "windows" {
				t.Skip("no executable bit on Windows")
			}
			got := ""
			err := tt.cfg.Validate()
			if err == nil {
				err = tt.cfg.CheckFiles()
			}
			if err != nil {
				got = err.Error()
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate, CheckFiles (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StopTimeout = 0
	if _, err := New(Options{Config: cfg}); err == nil || err.Error() != "supervisor.stop_timeout: 0s, want more than 0" {
		t.Errorf("New: %v, want the validation error", err)
	}
}

func TestSameAgent(t *testing.T) {
	base := AgentConfig{Name: "w", Executable: "./w", Args: []string{"--port", "{Port}"}, Env: map[string]string{"A": "1"}}
	tests := []struct {
		name   string
		change func(*AgentConfig)
		want   bool
	}{
		{name: "identical", change: func(*AgentConfig) {}, want: true},
		{name: "instances 0 is 1", change: func(a *AgentConfig) { a.Instances = 1 }, want: true},
		{name: "empty ports are omitted ports", change: func(a *AgentConfig) { a.Ports = []int{} }, want: true},
		{name: "an argument", change: func(a *AgentConfig) { a.Args = []string{"--port", "{Port}", "-v"} }, want: false},
		{name: "an env value", change: func(a *AgentConfig) { a.Env = map[string]string{"A": "2"} }, want: false},
		{name: "instances", change: func(a *AgentConfig) { a.Instances = 2 }, want: false},
		{name: "recycle after", change: func(a *AgentConfig) { a.RecycleAfter = time.Minute }, want: false},
		{name: "service names", change: func(a *AgentConfig) { a.ServiceNames = []string{"pkg.S"} }, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := base
			other.Args = append([]string(nil), base.Args...)
			tt.change(&other)
			if got := sameAgent(base, other); got != tt.want {
				t.Errorf("sameAgent = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPlaceholdersExpand(t *testing.T) {
	values := placeholders{Port: 5161, HostName: "node1", Instance: 2}
	tests := []struct {
		name, in, want string
	}{
		{name: "port", in: "--port={Port}", want: "--port=5161"},
		{name: "all", in: "{HostName}:{Port}/{Instance}", want: "node1:5161/2"},
		{name: "twice", in: "{Port}{Port}", want: "51615161"},
		{name: "JSON left alone", in: `{"port":1}`, want: `{"port":1}`},
		{name: "unknown left alone", in: "{Other}", want: "{Other}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, values.expand(tt.in)); diff != "" {
				t.Errorf("expand(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
