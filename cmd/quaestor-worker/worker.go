package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	"github.com/quaestor-go/quaestor/internal/grpcstop"
	"github.com/quaestor-go/quaestor/loadreport"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

const (
	// gracefulStopTimeout bounds how long a stop waits for running calls
	// (health watches included) before closing them.
	gracefulStopTimeout = 10 * time.Second
	// listeningLine is printed on stdout once the worker listens; tests and
	// scripts wait for it.
	listeningLine = "quaestor-worker listening on "
)

// healthServices are the services whose health the worker reports: the
// server as a whole ("") and Echo.
var healthServices = []string{"", examplev1.Echo_ServiceDesc.ServiceName}

// config is the worker's command line.
type config struct {
	host           string
	port           int
	name           string
	delay          time.Duration
	unhealthyAfter time.Duration
	maxMessageSize int
	capacity       int
	loadRate       float64 // negative: none
}

// usageError is a bad command line; the process exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parseFlags parses and validates args. --help prints the usage to stderr
// and returns pflag.ErrHelp.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := pflag.NewFlagSet("quaestor-worker", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.host, "host", "127.0.0.1", "address to listen on")
	fs.IntVar(&cfg.port, "port", 5161, "port to listen on; 0 picks a free one")
	fs.StringVar(&cfg.name, "name", "", "name reported in responses (default the bound host:port)")
	fs.DurationVar(&cfg.delay, "delay", 0, "wait added before every response")
	fs.DurationVar(&cfg.unhealthyAfter, "unhealthy-after", 0, "turn health NOT_SERVING this long after start, for good (0 = never)")
	fs.IntVar(&cfg.maxMessageSize, "max-message-size", 64<<20, "largest message received or sent, in bytes")
	fs.IntVar(&cfg.capacity, "capacity", 100, "calls the worker can run at once, reported as request_capacity (0 = unknown)")
	fs.Float64Var(&cfg.loadRate, "load-rate", -1, "fixed load to report as known_load_rate, typically 0 to 1 (negative = none: quaestor uses current/capacity)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return config{}, err
		}
		return config{}, usageError{err}
	}
	if fs.NArg() > 0 {
		return config{}, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case cfg.port < 0 || cfg.port > 65535:
		return config{}, usageError{fmt.Errorf("invalid --port %d: want 0 to 65535", cfg.port)}
	case cfg.delay < 0:
		return config{}, usageError{fmt.Errorf("invalid --delay %v: must not be negative", cfg.delay)}
	case cfg.unhealthyAfter < 0:
		return config{}, usageError{fmt.Errorf("invalid --unhealthy-after %v: must not be negative", cfg.unhealthyAfter)}
	case cfg.maxMessageSize <= 0:
		return config{}, usageError{fmt.Errorf("invalid --max-message-size %d: must be positive", cfg.maxMessageSize)}
	case cfg.capacity < 0:
		return config{}, usageError{fmt.Errorf("invalid --capacity %d: must not be negative", cfg.capacity)}
	case math.IsNaN(cfg.loadRate) || math.IsInf(cfg.loadRate, 0):
		return config{}, usageError{fmt.Errorf("invalid --load-rate %v: want a number", cfg.loadRate)}
	}
	return cfg, nil
}

// run serves until ctx is done, then reports NOT_SERVING and stops
// gracefully, within gracefulStopTimeout. It returns nil after such a stop.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	lis, err := net.Listen("tcp", net.JoinHostPort(cfg.host, strconv.Itoa(cfg.port)))
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	addr := lis.Addr().String()
	name := cmp.Or(cfg.name, addr)

	reporter := loadreport.New(loadreport.Options{Capacity: cfg.capacity, Logger: log})
	defer reporter.Close()
	reporter.SetKnownLoadRate(cfg.loadRate)

	serverOptions := append(reporter.ServerOptions(),
		grpc.MaxRecvMsgSize(cfg.maxMessageSize), grpc.MaxSendMsgSize(cfg.maxMessageSize),
		// Allow the proxy's keepalive pings down to gRPC's 10s floor, so
		// that backends.keepalive_time can find a hung worker quickly.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}))
	gs := grpc.NewServer(serverOptions...)
	if err := reporter.Register(gs); err != nil {
		lis.Close()
		return err
	}
	examplev1.RegisterEchoServer(gs, echo.New(echo.Options{Name: name, Delay: cfg.delay}))
	healthServer := health.NewServer()
	for _, service := range healthServices {
		healthServer.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(gs, healthServer)
	reflection.Register(gs)

	if _, err := fmt.Fprintf(stdout, "%s%s\n", listeningLine, addr); err != nil {
		lis.Close()
		return fmt.Errorf("announcing %s: %w", addr, err)
	}
	log.Info("listening", "addr", addr, "name", name, "delay", cfg.delay,
		"unhealthy_after", cfg.unhealthyAfter, "max_message_size", cfg.maxMessageSize,
		"capacity", cfg.capacity, "load_rate", cfg.loadRate)

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	served := make(chan error, 1)
	wg.Go(func() { served <- gs.Serve(lis) })
	if cfg.unhealthyAfter > 0 {
		wg.Go(func() { turnUnhealthyAfter(ctx, cfg.unhealthyAfter, healthServer, log) })
	}

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		healthServer.Shutdown()
		// Ends the ORCA out-of-band streams, which would hold up the
		// graceful stop; ReportLoad still answers with the last sample.
		reporter.Close()
		if grpcstop.Gracefully(gs, gracefulStopTimeout) {
			log.Warn("graceful stop timed out; closing the remaining calls", "timeout", gracefulStopTimeout)
		}
		serveErr = <-served
	case serveErr = <-served:
		gs.Stop()
	}
	cancel()
	wg.Wait()
	if serveErr != nil {
		return fmt.Errorf("serving on %s: %w", addr, serveErr)
	}
	log.Info("stopped")
	return nil
}

// turnUnhealthyAfter reports every health service NOT_SERVING, for good,
// once d has passed, unless ctx ends first.
func turnUnhealthyAfter(ctx context.Context, d time.Duration, healthServer *health.Server, log *slog.Logger) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	for _, service := range healthServices {
		healthServer.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	log.Warn("turned unhealthy as asked", "unhealthy_after", d)
}

// exitCode reports err on stderr and returns the process's exit status: 0
// for success or --help, 2 for a bad command line, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	var usage usageError
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "quaestor-worker: %v\nRun quaestor-worker --help for usage.\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "quaestor-worker: %v\n", err)
		return 1
	}
}
