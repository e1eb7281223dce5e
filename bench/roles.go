package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	grpcproxy "github.com/mwitkow/grpc-proxy/proxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	"github.com/quaestor-go/quaestor/loadreport"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// The harness runs its backends and the grpc-proxy baseline as processes
// of their own, so that every proxy is measured as a separate process: it
// starts its own binary again with the environment variable roleEnv set to
// the role. A role serves until SIGTERM or SIGINT, after printing one line
// "ready <JSON>" on stdout.
const (
	roleEnv       = "BENCH_ROLE"
	roleBackend   = "backend"
	roleGRPCProxy = "grpc-proxy"
	readyPrefix   = "ready "
)

// backendReady is what the backend role prints when it serves.
type backendReady struct {
	// Addr is the address of the echo backend the targets share.
	Addr string `json:"addr"`
	// Instances are the addresses of the registered instances of the
	// instance-count scenarios: 127.1.x.y, all on one port.
	Instances []string `json:"instances,omitempty"`
}

// runRole serves role until ctx is done.
func runRole(ctx context.Context, role string, args []string, stdout io.Writer) error {
	switch role {
	case roleBackend:
		return runBackendRole(ctx, args, stdout)
	case roleGRPCProxy:
		return runGRPCProxyRole(ctx, args, stdout)
	default:
		return fmt.Errorf("%s=%q: unknown role, want %s or %s", roleEnv, role, roleBackend, roleGRPCProxy)
	}
}

// runBackendRole serves, on one grpc.Server, the echo service with health
// (SERVING) and load reports, like cmd/quaestor-worker: on a loopback port
// for the targets, and on -instances more addresses for the registry
// scenarios.
func runBackendRole(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(roleBackend, flag.ContinueOnError)
	instances := fs.Int("instances", 0, "extra listening addresses (127.1.x.y, one port) for the instance-count scenarios")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reporter := loadreport.New(loadreport.Options{Logger: log})
	defer reporter.Close()
	opts := append(reporter.ServerOptions(), grpc.MaxRecvMsgSize(maxMessageSize), grpc.MaxSendMsgSize(maxMessageSize))
	gs := grpc.NewServer(opts...)
	if err := reporter.Register(gs); err != nil {
		return err
	}
	examplev1.RegisterEchoServer(gs, echo.New(echo.Options{Name: "bench-backend"}))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(echoService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	listeners := []net.Listener{lis}
	ready := backendReady{Addr: lis.Addr().String()}
	extra, err := listenInstances(*instances)
	listeners = append(listeners, extra...)
	if err != nil {
		closeListeners(listeners)
		return fmt.Errorf("backend: %w", err)
	}
	for _, l := range extra {
		ready.Instances = append(ready.Instances, l.Addr().String())
	}
	var wg sync.WaitGroup
	for _, l := range listeners {
		wg.Go(func() { _ = gs.Serve(l) })
	}
	if err := printReady(stdout, ready); err != nil {
		gs.Stop()
		wg.Wait()
		return err
	}
	<-ctx.Done()
	hs.Shutdown()
	gs.Stop()
	wg.Wait()
	return nil
}

// listenInstances listens on n loopback addresses 127.1.x.y sharing one
// port: the instances of the instance-count scenarios. Linux routes all
// of 127.0.0.0/8 to the loopback interface, so no setup is needed.
func listenInstances(n int) ([]net.Listener, error) {
	var out []net.Listener
	port := "0"
	for i := range n {
		host := fmt.Sprintf("127.1.%d.%d", i/250, i%250+1)
		l, err := net.Listen("tcp", net.JoinHostPort(host, port))
		if err != nil {
			return out, fmt.Errorf("listening for instance %d: %w", i+1, err)
		}
		if i == 0 {
			port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		}
		out = append(out, l)
	}
	return out, nil
}

func closeListeners(ls []net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}

// runGRPCProxyRole serves github.com/mwitkow/grpc-proxy's
// TransparentHandler on a loopback port, forwarding to the -backends in
// turn.
//
// The handler needs no codec of its own at this version: it relays each
// message as an emptypb.Empty whose unknown fields hold the whole message,
// through the server's default proto codec (proxy.Codec is deprecated as
// "no longer necessary"). Its director does what the package's
// DefaultDirector does (the incoming metadata, copied, becomes the
// outgoing), with one grpc.ClientConn per backend.
func runGRPCProxyRole(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(roleGRPCProxy, flag.ContinueOnError)
	backends := fs.String("backends", "", "comma-separated backend addresses")
	if err := fs.Parse(args); err != nil {
		return err
	}
	addrs := splitList(*backends)
	if len(addrs) == 0 {
		return errors.New("grpc-proxy: -backends: want at least one address")
	}
	conns := make([]*grpc.ClientConn, 0, len(addrs))
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()
	for _, addr := range addrs {
		cc, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize), grpc.MaxCallSendMsgSize(maxMessageSize)))
		if err != nil {
			return fmt.Errorf("grpc-proxy: connecting to %s: %w", addr, err)
		}
		conns = append(conns, cc)
	}
	var next atomic.Uint64
	director := func(ctx context.Context, _ string) (context.Context, *grpc.ClientConn, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		cc := conns[(next.Add(1)-1)%uint64(len(conns))]
		return metadata.NewOutgoingContext(ctx, md.Copy()), cc, nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("grpc-proxy: %w", err)
	}
	gs := grpc.NewServer(
		grpc.UnknownServiceHandler(grpcproxy.TransparentHandler(director)),
		grpc.MaxRecvMsgSize(maxMessageSize),
		grpc.MaxSendMsgSize(maxMessageSize))
	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(lis) })
	defer func() {
		gs.Stop()
		wg.Wait()
	}()
	if err := printReady(stdout, backendReady{Addr: lis.Addr().String()}); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func printReady(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s%s\n", readyPrefix, data)
	return err
}
