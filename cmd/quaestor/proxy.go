package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/quaestor-go/quaestor/cmd/quaestor/internal/config"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

func newProxyCommand(flags *globalFlags, stderr io.Writer) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the gRPC proxy on the configured endpoints",
		Long: `Run the gRPC proxy: every call to proxy.listen is forwarded to an endpoint of
its service. Stops on SIGINT or SIGTERM after draining the calls in flight
(proxy.drain_timeout).`,
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
			return runProxy(cmd.Context(), cfg, stderr)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "", "address to serve on (overrides proxy.listen)")
	return cmd
}

// runProxy serves the proxy until ctx is done, then drains it.
func runProxy(ctx context.Context, cfg config.Config, stderr io.Writer) error {
	logger := cfg.Log.NewLogger(stderr)
	table := routing.NewTable()
	if err := routing.LoadStatic(table, cfg.Services); err != nil {
		return usageError{err}
	}
	router, err := routing.NewRouter(routing.Options{
		Table:           table,
		DefaultPolicy:   cfg.Proxy.Policy,
		ServicePolicies: cfg.ServicePolicies(),
		Logger:          logger,
	})
	if err != nil {
		return err
	}
	defer router.Close()
	srv, err := proxy.NewServer(proxy.Options{Config: cfg.Proxy, Router: router, Logger: logger})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("proxy.listen %s: %w", cfg.Proxy.Listen, err)
	}
	logger.Info("quaestor proxy started", "version", buildVersion(), "listen", lis.Addr().String(), "services", len(cfg.Services))
	return srv.Run(ctx, lis)
}
