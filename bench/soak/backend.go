//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	"github.com/quaestor-go/quaestor/internal/grpcstop"
	"github.com/quaestor-go/quaestor/loadreport"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing/registry"
)

// The backend role: the soak program re-executes itself with these
// environment variables set to run one echo backend that registers itself in
// etcd under its own lease, as a worker started outside quaestor's
// supervisor would. SIGKILL leaves its registration until the lease expires;
// SIGTERM revokes it, then stops gracefully; SIGUSR1 and SIGUSR2 turn its
// health NOT_SERVING and back to SERVING.
const (
	envBackend  = "SOAK_BACKEND"   // "1" selects the role
	envEtcd     = "SOAK_ETCD"      // the etcd client URL
	envID       = "SOAK_ID"        // instance ID in the registry
	envPort     = "SOAK_PORT"      // port to listen on; 0 picks one
	envLeaseTTL = "SOAK_LEASE_TTL" // the registration's lease TTL

	// backendReadyLine is printed on stdout, followed by the address, once
	// the backend serves and is registered.
	backendReadyLine = "soak backend ready "
	// echoService is the service the backends register and the load calls.
	echoService = "quaestor.example.v1.Echo"
	// backendStopTimeout bounds a graceful stop: long server streams would
	// hold it up for their whole length.
	backendStopTimeout = 2 * time.Second
)

// isBackend reports whether this process was started to be a backend.
func isBackend() bool { return os.Getenv(envBackend) == "1" }

// runBackend serves one backend until SIGTERM or SIGINT, and returns the
// process's exit status.
func runBackend(stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serveBackend(ctx, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "soak backend: %v\n", err)
		return 1
	}
	return 0
}

func serveBackend(ctx context.Context, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	id := os.Getenv(envID)
	ttl, err := time.ParseDuration(os.Getenv(envLeaseTTL))
	if err != nil {
		return fmt.Errorf("%s: %w", envLeaseTTL, err)
	}
	port, err := strconv.Atoi(os.Getenv(envPort))
	if err != nil {
		return fmt.Errorf("%s: %w", envPort, err)
	}
	lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	addr := lis.Addr().String()

	reporter := loadreport.New(loadreport.Options{Capacity: 1000, Logger: log})
	defer reporter.Close()
	gs := grpc.NewServer(reporter.ServerOptions()...)
	if err := reporter.Register(gs); err != nil {
		lis.Close()
		return err
	}
	examplev1.RegisterEchoServer(gs, echo.New(echo.Options{Name: id}))
	healthServer := health.NewServer()
	setHealth(healthServer, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, healthServer)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()

	client, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Getenv(envEtcd)}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		gs.Stop()
		<-served
		return fmt.Errorf("etcd client: %w", err)
	}
	defer client.Close()
	reg, err := registry.NewRegistrar(registry.RegistrarOptions{Client: client, TTL: ttl, Logger: log})
	if err != nil {
		gs.Stop()
		<-served
		return err
	}
	regCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = reg.Register(regCtx, registry.Instance{Service: echoService, ID: id, Addr: addr})
	cancel()
	if err != nil {
		_ = reg.Close()
		gs.Stop()
		<-served
		return fmt.Errorf("registering %s: %w", id, err)
	}
	if _, err := fmt.Fprintf(stdout, "%s%s\n", backendReadyLine, addr); err != nil {
		_ = reg.Close()
		gs.Stop()
		<-served
		return err
	}

	flips := make(chan os.Signal, 2)
	signal.Notify(flips, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(flips)
	for {
		select {
		case sig := <-flips:
			if sig == syscall.SIGUSR1 {
				setHealth(healthServer, healthpb.HealthCheckResponse_NOT_SERVING)
			} else {
				setHealth(healthServer, healthpb.HealthCheckResponse_SERVING)
			}
		case err := <-served:
			_ = reg.Close()
			return fmt.Errorf("serving on %s: %w", addr, err)
		case <-ctx.Done():
			// Deregister first, so the proxy stops picking this backend
			// before it stops answering.
			regErr := reg.Close()
			healthServer.Shutdown()
			reporter.Close()
			grpcstop.Gracefully(gs, backendStopTimeout)
			if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return regErr
		}
	}
}

func setHealth(h *health.Server, st healthpb.HealthCheckResponse_ServingStatus) {
	for _, service := range []string{"", echoService} {
		h.SetServingStatus(service, st)
	}
}
