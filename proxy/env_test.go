package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

const echoService = "quaestor.example.v1.Echo"

// backendProcessEnv makes the test binary run as a backend process (see
// startBackendProcess) instead of running the tests.
const backendProcessEnv = "QUAESTOR_TEST_BACKEND_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(backendProcessEnv) != "" {
		runBackendProcess()
		return
	}
	goleak.VerifyTestMain(m)
}

// backend is a real gRPC server on loopback serving Echo, health and
// reflection.
type backend struct {
	addr   string
	echo   *echo.Server
	health *health.Server
	srv    *grpc.Server
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{
		addr:   lis.Addr().String(),
		echo:   echo.New(echo.Options{Name: name}),
		health: health.NewServer(),
		srv:    grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20)),
	}
	examplev1.RegisterEchoServer(b.srv, b.echo)
	healthpb.RegisterHealthServer(b.srv, b.health)
	reflection.Register(b.srv)
	go func() { _ = b.srv.Serve(lis) }()
	t.Cleanup(b.srv.Stop)
	return b
}

// startRawBackend serves handler for every method, to play backends whose
// behaviour Echo cannot show.
func startRawBackend(t *testing.T, handler grpc.StreamHandler) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(handler))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// runBackendProcess serves Echo (answering with its address as its name)
// and health (SERVING) on a free port, prints the address and serves until
// killed. It allows keepalive pings every second, for the tests of hung
// backends.
func runBackendProcess() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}))
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{Name: lis.Addr().String()}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	fmt.Println(lis.Addr().String())
	_ = srv.Serve(lis)
}

// startBackendProcess starts a backend in a child process, for tests that
// kill it.
func startBackendProcess(t *testing.T) (addr string, proc *os.Process) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), backendProcessEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("backend process printed no address: %v", err)
	}
	return strings.TrimSpace(line), cmd.Process
}

// newTestRouter returns a router closed when the test ends.
func newTestRouter(t testing.TB, opts routing.Options) *routing.Router {
	t.Helper()
	router, err := routing.NewRouter(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = router.Close() })
	return router
}

// serveProxy builds a proxy with opts (quiet unless a Logger is given),
// serves it on a free loopback port until the test ends, and returns its
// address.
func serveProxy(t testing.TB, opts proxy.Options) (string, *proxy.Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLog
	}
	srv, err := proxy.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String(), srv
}

// proxyEnv is a proxy in front of static backends.
type proxyEnv struct {
	addr   string
	server *proxy.Server
	table  *routing.Table
	conn   *grpc.ClientConn
	echo   examplev1.EchoClient
}

type proxyOption func(*proxy.Config)

// startProxy serves a proxy routing each service to the listed addresses.
func startProxy(t *testing.T, services map[string][]string, opts ...proxyOption) *proxyEnv {
	t.Helper()
	cfg := proxy.DefaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	var list []routing.ServiceConfig
	for name, addrs := range services {
		list = append(list, routing.ServiceConfig{Name: name, Endpoints: addrs})
	}
	table := routing.NewTable()
	if err := routing.LoadStatic(table, list); err != nil {
		t.Fatal(err)
	}
	router := newTestRouter(t, routing.Options{
		Table:       table,
		DialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))},
	})
	addr, srv := serveProxy(t, proxy.Options{Config: cfg, Router: router})
	env := &proxyEnv{addr: addr, server: srv, table: table}
	env.conn = dial(t, env.addr)
	env.echo = examplev1.NewEchoClient(env.conn)
	return env
}

var quietLog = slog.New(slog.DiscardHandler)

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	return dialTB(t, addr)
}

func dialTB(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// testContext is bounded so that a hung call fails the test instead of the
// run.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
