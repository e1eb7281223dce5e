package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	grpcproxy "github.com/mwitkow/grpc-proxy/proxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// Target names, as the -targets flag and the report spell them.
const (
	targetDirect    = "direct"
	targetQuaestor  = "quaestor"
	targetGRPCProxy = "grpc-proxy"
)

// allTargets lists the targets in report order; direct is the reference
// the others are compared with, grpc-proxy the baseline for quaestor.
var allTargets = []string{targetDirect, targetQuaestor, targetGRPCProxy}

// echoService is the service every target reaches.
const echoService = "quaestor.example.v1.Echo"

// A testbed is the set of servers the targets reach, all on loopback in
// this process: the echo backends, a quaestor proxy routing to them and a
// grpc-proxy handler forwarding to them. Close stops them all.
type testbed struct {
	backends []string
	// addrs maps a target name to the addresses its client connections
	// dial: the backends for direct, the proxy's for the others.
	addrs map[string][]string

	wg    sync.WaitGroup // the Serve goroutines
	stops []func() error // run in reverse order by Close
	// serveErrs collects the errors of Serve calls that ended on their own.
	serveMu   sync.Mutex
	serveErrs []error
}

// startTestbed starts n echo backends and both proxies in front of them.
// On error, what was started is stopped.
func startTestbed(n int) (_ *testbed, err error) {
	if n < 1 {
		return nil, fmt.Errorf("starting testbed: %d backends, want at least 1", n)
	}
	tb := &testbed{addrs: make(map[string][]string)}
	defer func() {
		if err != nil {
			err = errors.Join(err, tb.Close())
		}
	}()
	for i := range n {
		addr, err := tb.startBackend(fmt.Sprintf("b%d", i+1))
		if err != nil {
			return nil, err
		}
		tb.backends = append(tb.backends, addr)
	}
	tb.addrs[targetDirect] = tb.backends
	addr, err := tb.startQuaestor()
	if err != nil {
		return nil, err
	}
	tb.addrs[targetQuaestor] = []string{addr}
	addr, err = tb.startGRPCProxy()
	if err != nil {
		return nil, err
	}
	tb.addrs[targetGRPCProxy] = []string{addr}
	return tb, nil
}

// Close stops the servers, last started first, and waits for them; it
// returns their stop errors and the errors of servers that had stopped
// serving on their own.
func (tb *testbed) Close() error {
	var errs []error
	for i := len(tb.stops) - 1; i >= 0; i-- {
		errs = append(errs, tb.stops[i]())
	}
	tb.stops = nil
	tb.wg.Wait()
	tb.serveMu.Lock()
	defer tb.serveMu.Unlock()
	return errors.Join(append(errs, tb.serveErrs...)...)
}

// serve runs serve in a goroutine the testbed owns, keeping its error.
func (tb *testbed) serve(what string, serve func() error) {
	tb.wg.Go(func() {
		if err := serve(); err != nil {
			tb.serveMu.Lock()
			tb.serveErrs = append(tb.serveErrs, fmt.Errorf("%s: %w", what, err))
			tb.serveMu.Unlock()
		}
	})
}

// listen opens a loopback listener on a free port.
func listen(what string) (net.Listener, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting %s: listening: %w", what, err)
	}
	return lis, nil
}

// startBackend serves an echo.Server named name and returns its address.
func (tb *testbed) startBackend(name string) (string, error) {
	what := "backend " + name
	lis, err := listen(what)
	if err != nil {
		return "", err
	}
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMessageSize),
		grpc.MaxSendMsgSize(maxMessageSize),
		grpc.WaitForHandlers(true))
	examplev1.RegisterEchoServer(gs, echo.New(echo.Options{Name: name}))
	tb.serve(what, func() error { return gs.Serve(lis) })
	tb.stops = append(tb.stops, func() error { gs.Stop(); return nil })
	return lis.Addr().String(), nil
}

// startQuaestor serves quaestor's proxy, routing the echo service to the
// backends with its default configuration, and returns its address.
func (tb *testbed) startQuaestor() (string, error) {
	const what = "quaestor"
	table := routing.NewTable()
	if err := routing.LoadStatic(table, []routing.ServiceConfig{{Name: echoService, Endpoints: tb.backends}}); err != nil {
		return "", fmt.Errorf("starting %s: %w", what, err)
	}
	discard := slog.New(slog.DiscardHandler)
	router, err := routing.NewRouter(routing.Options{Table: table, Logger: discard})
	if err != nil {
		return "", fmt.Errorf("starting %s: %w", what, err)
	}
	srv, err := proxy.NewServer(proxy.Options{Config: proxy.DefaultConfig(), Router: router, Logger: discard})
	if err != nil {
		return "", errors.Join(fmt.Errorf("starting %s: %w", what, err), router.Close())
	}
	lis, err := listen(what)
	if err != nil {
		return "", errors.Join(err, router.Close())
	}
	tb.serve(what, func() error { return srv.Serve(lis) })
	tb.stops = append(tb.stops, func() error {
		srv.Stop()
		if err := router.Close(); err != nil {
			return fmt.Errorf("stopping %s: %w", what, err)
		}
		return nil
	})
	return lis.Addr().String(), nil
}

// startGRPCProxy serves github.com/mwitkow/grpc-proxy's TransparentHandler,
// forwarding to the backends in turn, and returns its address.
//
// The handler needs no codec of its own at this version: it relays each
// message as an emptypb.Empty whose unknown fields hold the whole message,
// through the server's default proto codec (proxy.Codec is deprecated as
// "no longer necessary"). Its director does what the package's
// DefaultDirector does (the incoming metadata, copied, becomes the
// outgoing), over the backends in turn.
func (tb *testbed) startGRPCProxy() (string, error) {
	const what = "grpc-proxy"
	conns := make([]*grpc.ClientConn, 0, len(tb.backends))
	closeConns := func() error {
		var errs []error
		for _, cc := range conns {
			errs = append(errs, cc.Close())
		}
		return errors.Join(errs...)
	}
	for _, addr := range tb.backends {
		cc, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(
				grpc.MaxCallRecvMsgSize(maxMessageSize),
				grpc.MaxCallSendMsgSize(maxMessageSize)))
		if err != nil {
			return "", errors.Join(fmt.Errorf("starting %s: connecting to %s: %w", what, addr, err), closeConns())
		}
		conns = append(conns, cc)
	}
	var next atomic.Uint64
	director := func(ctx context.Context, _ string) (context.Context, *grpc.ClientConn, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		cc := conns[(next.Add(1)-1)%uint64(len(conns))]
		return metadata.NewOutgoingContext(ctx, md.Copy()), cc, nil
	}
	lis, err := listen(what)
	if err != nil {
		return "", errors.Join(err, closeConns())
	}
	gs := grpc.NewServer(
		grpc.UnknownServiceHandler(grpcproxy.TransparentHandler(director)),
		grpc.MaxRecvMsgSize(maxMessageSize),
		grpc.MaxSendMsgSize(maxMessageSize),
		grpc.WaitForHandlers(true))
	tb.serve(what, func() error { return gs.Serve(lis) })
	tb.stops = append(tb.stops, func() error {
		gs.Stop()
		if err := closeConns(); err != nil {
			return fmt.Errorf("stopping %s: %w", what, err)
		}
		return nil
	})
	return lis.Addr().String(), nil
}
