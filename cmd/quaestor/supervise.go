package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"reflect"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/admin"
	"github.com/quaestor-go/quaestor/routing"
	"github.com/quaestor-go/quaestor/supervisor"
)

func newSuperviseCommand(flags *globalFlags, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:     "supervise",
		Aliases: []string{"cluster"},
		Short:   "Run the supervisor alone: keep this machine's workers alive, healthy and registered",
		Long: `Run the supervisor without the proxy: start the worker processes of
supervisor.agents, check them with grpc.health.v1, restart those that die or
stop serving, and register the healthy ones in etcd (unless etcd.mode is
none). The admin server answers /api/status for 'quaestor status'.
SIGHUP, or a change of the configuration file, reloads the agents: only
added, removed or changed agents are touched. SIGINT or SIGTERM stops every
worker, deregistering it first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.loadConfig(os.Environ())
			if err != nil {
				return err
			}
			s := newStack(cfg, stderr)
			defer s.stop()
			client, err := s.startEtcd(false)
			if err != nil {
				return err
			}
			if err := s.startSupervisor(cmd.Context(), client, flags); err != nil {
				return err
			}
			if err := s.serveAdmin(); err != nil {
				return err
			}
			s.logger.Info("quaestor supervisor started", "version", buildVersion(), "agents", len(cfg.Supervisor.Agents), "admin", cfg.Admin.Listen)
			<-cmd.Context().Done()
			return nil
		},
	}
}

// startSupervisor starts the configured agents, registering their healthy
// instances through client (nil: no registration), and reloads them on
// SIGHUP or a change of the configuration file. The stack's stop stops
// them, deregistering first.
func (s *stack) startSupervisor(ctx context.Context, client *clientv3.Client, flags *globalFlags) error {
	if len(s.cfg.Supervisor.Agents) == 0 {
		return nil
	}
	opts := supervisor.Options{Config: s.cfg.Supervisor, Logger: s.logger}
	if client != nil {
		reg, err := s.registrar(client)
		if err != nil {
			return err
		}
		opts.Registry = reg
	}
	sup, err := supervisor.New(opts)
	if err != nil {
		return usageError{err}
	}
	if err := sup.Start(ctx); err != nil {
		return err
	}
	s.onStop(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.Supervisor.StopTimeout+5*time.Second)
		defer cancel()
		if err := sup.Stop(stopCtx); err != nil {
			s.logger.Warn("supervisor: stopping", "error", err)
		}
	})
	s.processes = func() []admin.ProcessStatus { return processStatus(sup.Status()) }
	s.metrics.MustRegister(admin.SupervisorCollector(sup.Status))
	s.checks = append(s.checks, admin.Check{Name: "supervisor", Ready: func() error { return nil }})

	reloadCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.reloadOnChange(reloadCtx, flags, sup)
	}()
	s.onStop(func() {
		cancel()
		<-done
	})
	return nil
}

// configPoll is how often the configuration file is checked for changes.
const configPoll = time.Second

// reloadOnChange reloads the configuration on SIGHUP or when its file
// changes, and applies the new agents (and static services) until ctx ends.
// A configuration that does not load is logged and ignored: what runs
// keeps running.
func (s *stack) reloadOnChange(ctx context.Context, flags *globalFlags, sup *supervisor.Supervisor) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(configPoll)
	defer tick.Stop()
	last := fileStamp(flags.configPath)
	services := s.cfg.Services
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			s.logger.Info("config: SIGHUP: reloading", "file", flags.configPath)
		case <-tick.C:
			stamp := fileStamp(flags.configPath)
			if stamp == last {
				continue
			}
			last = stamp
			s.logger.Info("config: file changed: reloading", "file", flags.configPath)
		}
		cfg, err := flags.loadConfig(os.Environ())
		if err != nil {
			s.logger.Error("config: reload refused; keeping the running configuration", "error", err)
			continue
		}
		if err := sup.Reload(cfg.Supervisor); err != nil {
			s.logger.Error("config: reloading the supervisor", "error", err)
		}
		// Static endpoints follow the file too; policies are set when
		// quaestor starts.
		if s.table != nil && !reflect.DeepEqual(cfg.Services, services) {
			if err := routing.LoadStatic(s.table, cfg.Services); err != nil {
				s.logger.Error("config: reloading services", "error", err)
			} else {
				services = cfg.Services
			}
		}
	}
}

// fileStamp identifies a version of a file by its size and time.
func fileStamp(path string) [2]int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return [2]int64{}
	}
	return [2]int64{fi.Size(), fi.ModTime().UnixNano()}
}

func processStatus(in []supervisor.InstanceStatus) []admin.ProcessStatus {
	out := make([]admin.ProcessStatus, 0, len(in))
	for _, p := range in {
		out = append(out, admin.ProcessStatus{
			Agent: p.Agent, Instance: p.Instance, State: p.State, PID: p.PID, Port: p.Port, Addr: p.Addr,
			Health: p.Health, Restarts: p.Restarts, StartedAt: p.StartedAt, LastExit: p.LastExit,
			LastExitAt: p.LastExitAt, Registered: p.Registered, LastLines: p.LastLines,
		})
	}
	return out
}
