package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quaestor-go/quaestor/routing"
	"github.com/quaestor-go/quaestor/routing/registry"
)

func newRegisterCommand(flags *globalFlags, stderr io.Writer) *cobra.Command {
	var inst registry.Instance
	var meta []string
	cmd := &cobra.Command{
		Use:   "register --service NAME --addr HOST:PORT",
		Short: "Register an instance in etcd and keep it registered until stopped",
		Long: `Register one instance of a service in etcd, under a lease of registry.lease_ttl
kept alive for as long as this command runs. SIGINT or SIGTERM revokes the
lease: the instance is gone from every proxy at once. If the command dies,
the instance disappears when its lease expires.

For backends that cannot register themselves, e.g. .NET workers started by
hand or by a service manager.`,
		Example: `  quaestor register --service quaestor.example.v1.Echo --addr 10.0.0.5:5161 --meta zone=a`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := flags.loadConfig(os.Environ())
			if err != nil {
				return err
			}
			if inst.Service == "" || inst.Addr == "" {
				return usageError{errors.New("--service and --addr are required")}
			}
			if err := routing.ValidateAddr(inst.Addr); err != nil {
				return usageError{fmt.Errorf("--addr: %w", err)}
			}
			if cfg.Etcd.Mode == registry.ModeNone {
				return usageError{errors.New("etcd.mode is none: there is no etcd to register in")}
			}
			for _, kv := range meta {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usageError{fmt.Errorf("--meta %q: want key=value", kv)}
				}
				if inst.Metadata == nil {
					inst.Metadata = map[string]string{}
				}
				inst.Metadata[k] = v
			}
			s := newStack(cfg, stderr)
			defer s.stop()
			client, err := s.startEtcd(false)
			if err != nil {
				return err
			}
			reg, err := s.registrar(client) // the stack's stop revokes its lease
			if err != nil {
				return err
			}
			return holdRegistration(cmd.Context(), reg, inst, s)
		},
	}
	cmd.Flags().StringVar(&inst.Service, "service", "", "full gRPC service name (required)")
	cmd.Flags().StringVar(&inst.Addr, "addr", "", "host:port the instance serves on (required)")
	cmd.Flags().StringVar(&inst.ID, "id", "", "instance id (default: the address)")
	cmd.Flags().StringArrayVar(&meta, "meta", nil, "metadata key=value, e.g. weight=2, zone=a (repeatable)")
	return cmd
}

// holdRegistration registers inst and keeps it until ctx is done.
func holdRegistration(ctx context.Context, reg *registry.Registrar, inst registry.Instance, s *stack) error {
	regCtx, cancel := context.WithTimeout(ctx, s.cfg.Etcd.DialTimeout+s.cfg.Etcd.RequestTimeout)
	defer cancel()
	if err := reg.Register(regCtx, inst); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.logger.Info("register: registered; holding until SIGINT or SIGTERM",
		"service", inst.Service, "addr", inst.Addr, "scope", s.cfg.Registry.Scope, "lease_ttl", s.cfg.Registry.LeaseTTL)
	<-ctx.Done()
	return nil
}
