// Package config composes quaestor's configuration from the typed configs
// of its components, and loads it from a YAML file, QUAESTOR_ environment
// variables and command-line overrides, in that order of precedence (a
// later source wins).
//
//	cfg, err := config.Load(config.Source{Path: "configs/quaestor.yaml", Environ: os.Environ()})
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/admin"
	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/tracing"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
	"github.com/quaestor-go/quaestor/routing/registry"
	"github.com/quaestor-go/quaestor/supervisor"
)

// Config is the whole configuration file.
type Config struct {
	// Proxy is the gRPC front door.
	Proxy proxy.Config `koanf:"proxy"`
	// Admin is the operator HTTP server.
	Admin admin.Config `koanf:"admin"`
	// Etcd is where registrations live.
	Etcd registry.EtcdConfig `koanf:"etcd"`
	// Registry places and times registrations.
	Registry registry.Config `koanf:"registry"`
	// Supervisor lists the worker processes this machine keeps running.
	Supervisor supervisor.Config `koanf:"supervisor"`
	// Health configures active and passive health checks.
	Health routing.HealthConfig `koanf:"health"`
	// Load configures load collection.
	Load routing.LoadConfig `koanf:"load"`
	// Retry lists the idempotent methods and how they are retried.
	Retry routing.RetryConfig `koanf:"retry"`
	// Backends configures the connections to backend instances.
	Backends routing.BackendConfig `koanf:"backends"`
	// Services lists static endpoints per service, merged with what
	// registries hold.
	Services []routing.ServiceConfig `koanf:"services"`
	// Tracing exports OpenTelemetry spans of proxied calls.
	Tracing tracing.Config `koanf:"tracing"`
	// Log sets up the process's logs.
	Log LogConfig `koanf:"log"`
}

// LogConfig is the `log:` section.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `koanf:"level"`
	// Format is text or json. Default text.
	Format string `koanf:"format"`
}

// Default returns the configuration with every default set.
func Default() Config {
	return Config{
		Proxy:      proxy.DefaultConfig(),
		Admin:      admin.DefaultConfig(),
		Etcd:       registry.DefaultEtcdConfig(),
		Registry:   registry.DefaultConfig(),
		Health:     routing.DefaultHealthConfig(),
		Supervisor: supervisor.DefaultConfig(),
		Load:       routing.DefaultLoadConfig(),
		Retry:      routing.DefaultRetryConfig(),
		Backends:   routing.DefaultBackendConfig(),
		Tracing:    tracing.DefaultConfig(),
		Log:        LogConfig{Level: "info", Format: "text"},
	}
}

// Validate returns an error naming the first key with a bad value.
func (c Config) Validate() error {
	if err := c.Proxy.Validate(); err != nil {
		return err
	}
	if err := routing.ValidatePolicy(c.Proxy.Policy); err != nil {
		return fmt.Errorf("proxy.policy: %w", err)
	}
	if err := routing.ValidateServices(c.Services); err != nil {
		return err
	}
	if err := c.Admin.Validate(); err != nil {
		return err
	}
	if err := c.Etcd.Validate(); err != nil {
		return err
	}
	if err := c.Registry.Validate(); err != nil {
		return err
	}
	if err := c.Supervisor.Validate(); err != nil {
		return err
	}
	if err := c.Health.Validate(); err != nil {
		return err
	}
	if err := c.Load.Validate(); err != nil {
		return err
	}
	if err := c.Retry.Validate(); err != nil {
		return err
	}
	if err := c.Backends.Validate(); err != nil {
		return err
	}
	if err := c.Tracing.Validate(); err != nil {
		return err
	}
	return c.Log.Validate()
}

// Validate checks the log level and format.
func (c LogConfig) Validate() error {
	if _, err := c.level(); err != nil {
		return err
	}
	switch c.Format {
	case "text", "json":
		return nil
	}
	return fmt.Errorf("log.format: %q is not text or json", c.Format)
}

func (c LogConfig) level() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		return 0, fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Level)
	}
	return l, nil
}

// ServicePolicies returns the policy of each service that names one, and
// the hash key of each that has one.
func (c Config) ServicePolicies() (policies, hashKeys map[string]string) {
	policies, hashKeys = make(map[string]string), make(map[string]string)
	for _, s := range c.Services {
		if s.Policy != "" {
			policies[s.Name] = s.Policy
		}
		if s.HashKey != "" {
			hashKeys[s.Name] = s.HashKey
		}
	}
	return policies, hashKeys
}

// errUnknownKey is wrapped by errors about keys no component declares.
var errUnknownKey = errors.New("unknown config key")

// keyList formats known keys for an error message.
func keyList(keys []string) string {
	return strings.Join(keys, ", ")
}

// NewLogger returns the logger the `log:` section describes, writing to w.
// The config must be valid.
func (c LogConfig) NewLogger(w io.Writer) *slog.Logger {
	level, _ := c.level()
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
