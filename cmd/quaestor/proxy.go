package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/config"
)

func newProxyCommand(flags *globalFlags, stderr io.Writer) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the gRPC proxy, routing to static endpoints and etcd registrations",
		Long: `Run the gRPC proxy: every call to proxy.listen is forwarded to an endpoint of
its service, from the services: list and, unless etcd.mode is none, from the
registrations in etcd (an external cluster, or the embedded etcd of a
'quaestor run' at etcd.client_url). Stops on SIGINT or SIGTERM after draining
the calls in flight (proxy.drain_timeout).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.loadConfig(os.Environ())
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Proxy.Listen = listen
				if err := cfg.Validate(); err != nil {
					return usageError{fmt.Errorf("--listen: %w", err)}
				}
			}
			return runProxy(cmd.Context(), cfg, flags, stderr, false)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve on (overrides proxy.listen)")
	return cmd
}

func newRunCommand(flags *globalFlags, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run everything: the embedded etcd (or the external one), the supervisor, the proxy and the admin server",
		Long: `Run quaestor all in one: with etcd.mode embedded, a single-node etcd in this
process (data in etcd.dir, clients at etcd.client_url); with external, a
client of the cluster at etcd.endpoints. Then the supervised workers of
supervisor.agents, the proxy and the admin server. SIGHUP, or a change of
the configuration file, reloads the agents and the static services. Stops on
SIGINT or SIGTERM: the proxy drains, the workers stop (deregistered first),
then etcd stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.loadConfig(os.Environ())
			if err != nil {
				return err
			}
			return runProxy(cmd.Context(), cfg, flags, stderr, true)
		},
	}
}

// runProxy runs the proxy, its routing and the admin server until ctx is
// done; all in one (quaestor run), also the embedded etcd and the
// supervisor.
func runProxy(ctx context.Context, cfg config.Config, flags *globalFlags, stderr io.Writer, allInOne bool) error {
	s := newStack(cfg, stderr)
	defer s.stop()
	if err := s.startTracing(ctx); err != nil {
		return err
	}
	client, err := s.startEtcd(allInOne)
	if err != nil {
		return err
	}
	router, err := s.startRouting(client)
	if err != nil {
		return err
	}
	if allInOne {
		if err := s.startSupervisor(ctx, client, flags); err != nil {
			return err
		}
	}
	return s.serveProxy(ctx, router, client)
}
