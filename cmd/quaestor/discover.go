package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	sdpb "github.com/quaestor-go/quaestor/proto/servicediscovery"
	"github.com/quaestor-go/quaestor/routing"
)

func newDiscoverCommand(flags *globalFlags, stdout io.Writer) *cobra.Command {
	var (
		top, best bool
		maxCount  int
		addr      string
		scope     string
		tlsCfg    routing.TLSConfig
	)
	cmd := &cobra.Command{
		Use:   "discover [--top | --best] [--max N] [--addr HOST:PORT] SERVICE",
		Short: "Ask a proxy for the instances of a service (look-aside discovery)",
		Long: `Ask a proxy's Quaestor.ServiceDiscovery service for the instances of SERVICE and
print one host:port per line: the healthy ones in random order, with --top
ranked least loaded first, with --best only the best one.`,
		Example: `  quaestor discover --top --max 2 quaestor.example.v1.Echo`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if addr == "" || scope == "" {
				cfg, err := flags.loadConfig(os.Environ())
				if err != nil {
					return err
				}
				if addr == "" {
					addr = cfg.Proxy.Listen
				}
				if scope == "" {
					scope = cfg.Registry.Scope
				}
			}
			if top && best {
				return usageError{fmt.Errorf("--top and --best: give one")}
			}
			creds := insecure.NewCredentials()
			if tlsCfg.Enabled() {
				if err := tlsCfg.Validate("--tls"); err != nil {
					return usageError{err}
				}
				c, err := tlsCfg.ClientTLS()
				if err != nil {
					return usageError{fmt.Errorf("--tls-*: %w", err)}
				}
				creds = credentials.NewTLS(c)
			}
			req := &sdpb.DiscoverServicesRequest{Scope: scope, ServiceName: args[0], MaxCount: int32(maxCount)}
			return discover(cmd.Context(), addr, creds, req, top, best, stdout)
		},
	}
	cmd.Flags().BoolVar(&top, "top", false, "rank the instances, least loaded first")
	cmd.Flags().BoolVar(&best, "best", false, "print only the best instance")
	cmd.Flags().IntVar(&maxCount, "max", 0, "print at most N instances (0: all)")
	cmd.Flags().StringVar(&addr, "addr", "", "the proxy to ask (default proxy.listen)")
	cmd.Flags().StringVar(&scope, "scope", "", "the registry scope (default registry.scope)")
	cmd.Flags().StringVar(&tlsCfg.CA, "tls-ca", "", "call the proxy over TLS, verifying it with these PEM CAs")
	cmd.Flags().StringVar(&tlsCfg.ServerName, "tls-server-name", "", "call over TLS, checking this name in the proxy's certificate")
	cmd.Flags().StringVar(&tlsCfg.Cert, "tls-cert", "", "client certificate (PEM) for a proxy requiring one")
	cmd.Flags().StringVar(&tlsCfg.Key, "tls-key", "", "its key")
	return cmd
}

func discover(ctx context.Context, addr string, creds credentials.TransportCredentials, req *sdpb.DiscoverServicesRequest, top, best bool, stdout io.Writer) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return usageError{fmt.Errorf("--addr %q: %w", addr, err)}
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := sdpb.NewServiceDiscoveryGrpcClient(cc)
	var locations []*sdpb.ServiceLocationMsg
	switch {
	case best:
		loc, err := client.DiscoverTopService(ctx, req)
		if err != nil {
			return fmt.Errorf("discovering %s at %s: %w", req.GetServiceName(), addr, err)
		}
		locations = append(locations, loc)
	case top:
		resp, err := client.DiscoverTopServices(ctx, req)
		if err != nil {
			return fmt.Errorf("discovering %s at %s: %w", req.GetServiceName(), addr, err)
		}
		locations = resp.GetServiceLocations()
	default:
		resp, err := client.DiscoverServices(ctx, req)
		if err != nil {
			return fmt.Errorf("discovering %s at %s: %w", req.GetServiceName(), addr, err)
		}
		locations = resp.GetServiceLocations()
	}
	if len(locations) == 0 {
		return fmt.Errorf("no healthy instance of %s in scope %q at %s", req.GetServiceName(), req.GetScope(), addr)
	}
	for _, loc := range locations {
		fmt.Fprintln(stdout, net.JoinHostPort(loc.GetHostName(), strconv.Itoa(int(loc.GetPort()))))
	}
	return nil
}
