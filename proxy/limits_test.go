package proxy

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestValidateLimits(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no connection or stream limit", func(c *Config) { c.MaxConnections, c.MaxConcurrentStreams = 0, 0 }, ""},
		{"connection durations", func(c *Config) {
			c.MaxConnectionIdle, c.MaxConnectionAge, c.MaxConnectionAgeGrace = time.Minute, time.Hour, time.Minute
		}, ""},
		{"any ping interval", func(c *Config) { c.Keepalive.MinTime = 0 }, ""},
		{"negative max_connections", func(c *Config) { c.MaxConnections = -1 },
			"proxy.max_connections: -1 is negative, want 0 (no limit) or more"},
		{"negative max_concurrent_streams", func(c *Config) { c.MaxConcurrentStreams = -1 },
			"proxy.max_concurrent_streams: -1 is out of range, want 0 (no limit) to 4294967295"},
		{"max_concurrent_streams beyond HTTP/2", func(c *Config) { c.MaxConcurrentStreams = 1 << 32 },
			"proxy.max_concurrent_streams: 4294967296 is out of range"},
		{"tiny max_header_list_size", func(c *Config) { c.MaxHeaderListSize = 100 },
			"proxy.max_header_list_size: 100 is out of range, want 1024 to 4294967295 bytes"},
		{"zero connection_timeout", func(c *Config) { c.ConnectionTimeout = 0 },
			"proxy.connection_timeout: 0s is not positive"},
		{"keepalive.time below gRPC's floor", func(c *Config) { c.Keepalive.Time = 500 * time.Millisecond },
			"proxy.keepalive.time: 500ms is below the minimum, 1s"},
		{"zero keepalive.timeout", func(c *Config) { c.Keepalive.Timeout = 0 },
			"proxy.keepalive.timeout: 0s is not positive"},
		{"negative keepalive.min_time", func(c *Config) { c.Keepalive.MinTime = -time.Second },
			"proxy.keepalive.min_time: -1s is negative"},
		{"negative max_connection_idle", func(c *Config) { c.MaxConnectionIdle = -time.Second },
			"proxy.max_connection_idle: -1s is negative, want 0 (never) or more"},
		{"negative max_connection_age", func(c *Config) { c.MaxConnectionAge = -time.Second },
			"proxy.max_connection_age: -1s is negative"},
		{"negative max_connection_age_grace", func(c *Config) { c.MaxConnectionAgeGrace = -time.Second },
			"proxy.max_connection_age_grace: -1s is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.change(&cfg)
			err := cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate() = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestRefusedConnectionsLogged: a flood of refused connections gives one
// log line per interval, carrying the count refused since the last.
func TestRefusedConnectionsLogged(t *testing.T) {
	var log bytes.Buffer
	now := time.Unix(1000, 0)
	l := &connLimiter{max: 1, logger: slog.New(slog.NewTextHandler(&log, nil)), now: func() time.Time { return now }}
	refuse := func(n int) {
		for range n {
			client, server := net.Pipe()
			l.refuse(server)
			_ = client.Close()
		}
	}
	lines := func() []string { return strings.Split(strings.TrimSpace(log.String()), "\n") }

	refuse(5)
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "refused=1 ") {
		t.Fatalf("after 5 refused: %q, want one line for the first", got)
	}
	now = now.Add(refusedLogInterval / 2)
	refuse(3)
	if got := lines(); len(got) != 1 {
		t.Fatalf("half an interval later: %q, want still one line", got)
	}
	now = now.Add(refusedLogInterval)
	refuse(1)
	got := lines()
	if len(got) != 2 || !strings.Contains(got[1], "refused=8 ") || !strings.Contains(got[1], "max_connections=1 ") {
		t.Fatalf("an interval later: %q, want a second line counting the 8 refused since the first", got)
	}
}
