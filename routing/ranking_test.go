package routing_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/orca"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	"github.com/quaestor-go/quaestor/internal/testwait"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	loadreportingpb "github.com/quaestor-go/quaestor/proto/loadreporting"
	"github.com/quaestor-go/quaestor/routing"
)

// testBackend is a real gRPC server with Echo and health, and optionally a
// load source.
type testBackend struct {
	name   string
	addr   string
	srv    *grpc.Server
	health *health.Server
	// rate is what its Quaestor.LoadReporting answers, as float64 bits.
	rate atomic.Uint64
}

type backendKind int

const (
	plainBackend  backendKind = iota
	dotnetBackend             // Quaestor.LoadReporting + health, no ORCA, as .NET workers
	orcaBackend               // ORCA out-of-band only
)

func startTestBackend(t *testing.T, name string, kind backendKind, load float64) *testBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{name: name, addr: lis.Addr().String(), health: health.NewServer()}
	b.rate.Store(mathFloat64bits(load))
	b.srv = grpc.NewServer()
	examplev1.RegisterEchoServer(b.srv, echo.New(echo.Options{Name: name}))
	healthpb.RegisterHealthServer(b.srv, b.health)
	switch kind {
	case dotnetBackend:
		loadreportingpb.RegisterLoadReportingGrpcServer(b.srv, dotnetLoad{b: b})
	case orcaBackend:
		recorder := orca.NewServerMetricsRecorder()
		recorder.SetCPUUtilization(load)
		recorder.SetApplicationUtilization(load)
		if err := orca.Register(b.srv, orca.ServiceOptions{ServerMetricsProvider: recorder}); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = b.srv.Serve(lis) }()
	t.Cleanup(b.srv.Stop)
	return b
}

// dotnetLoad answers ReportLoad as a .NET quaestor worker does.
type dotnetLoad struct {
	loadreportingpb.UnimplementedLoadReportingGrpcServer
	b *testBackend
}

func (d dotnetLoad) ReportLoad(context.Context, *loadreportingpb.LoadReportRequest) (*loadreportingpb.LoadReportResponse, error) {
	return &loadreportingpb.LoadReportResponse{
		TimestampTicks: time.Now().UnixNano()/100 + 621355968000000000,
		KnownLoadRate:  mathFloat64frombits(d.b.rate.Load()),
		ServerStats:    &loadreportingpb.ServerStats{RequestCapacity: 100, CurrentRequests: 3, ServerUtilization: 0.2, ServerMemoryUsagePercent: 40},
	}, nil
}

// monitored is a table with a monitor and a router over static backends.
type monitored struct {
	table  *routing.Table
	router *routing.Router
}

func startMonitored(t *testing.T, policy string, backends ...*testBackend) *monitored {
	t.Helper()
	table := routing.NewTable()
	var eps []routing.Endpoint
	for _, b := range backends {
		eps = append(eps, routing.Endpoint{Addr: b.addr})
	}
	table.Update(echoService, routing.SourceStatic, eps)
	health := routing.DefaultHealthConfig()
	health.Interval, health.Timeout, health.EjectAfter = 100*time.Millisecond, time.Second, 3
	mon, err := routing.StartMonitor(routing.MonitorOptions{
		Table:  table,
		Health: health,
		Load:   routing.LoadConfig{Interval: 50 * time.Millisecond, MaxAge: 10 * time.Second},
		Logger: quietLogger,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mon.Close)
	r := newRouter(t, table, routing.Options{DefaultPolicy: policy, Logger: quietLogger})
	return &monitored{table: table, router: r}
}

func (m *monitored) call(ctx context.Context) (string, error) {
	cc, err := m.router.Conn(echoService)
	if err != nil {
		return "", err
	}
	resp, err := examplev1.NewEchoClient(cc).Unary(ctx, &examplev1.EchoRequest{})
	return resp.GetServer(), err
}

// waitOnly calls until n calls in a row were answered by server: the
// balancer's ranking reflects the last change. Each call is bounded: one
// placed on a hung backend before the balancer learnt of it fails, and
// the count starts again.
func (m *monitored) waitOnly(ctx context.Context, t *testing.T, server string, n int) {
	t.Helper()
	inARow := 0
	testwait.For(ctx, t, "calls on "+server+" alone", func() bool {
		callCtx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if s, err := m.call(callCtx); err == nil && s == server {
			inARow++
		} else {
			inARow = 0
		}
		return inARow == n
	})
}

func (m *monitored) state(addr string) *routing.EndpointState {
	eps, _ := m.table.Endpoints(echoService)
	for _, ep := range eps {
		if ep.Addr == addr {
			return ep.State
		}
	}
	return nil
}

func (m *monitored) countCalls(ctx context.Context, t *testing.T, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		server, err := m.call(ctx)
		if err != nil {
			t.Fatal(err)
		}
		counts[server]++
	}
	return counts
}

// TestLeastLoadedRanksByReports starts workers reporting different loads,
// .NET-style (ReportLoad only) and grpc-go ORCA-only: most calls go to the
// least loaded.
func TestLeastLoadedRanksByReports(t *testing.T) {
	for _, kind := range []struct {
		name string
		kind backendKind
	}{{"dotnet-style ReportLoad", dotnetBackend}, {"ORCA only", orcaBackend}} {
		t.Run(kind.name, func(t *testing.T) {
			busy := startTestBackend(t, "busy", kind.kind, 0.9)
			idle := startTestBackend(t, "idle", kind.kind, 0.1)
			half := startTestBackend(t, "half", kind.kind, 0.5)
			m := startMonitored(t, routing.PolicyLeastLoaded, busy, idle, half)
			ctx := testContext(t)
			testwait.For(ctx, t, "every endpoint's load", func() bool {
				for _, b := range []*testBackend{busy, idle, half} {
					if s := m.state(b.addr); s == nil || s.Load() == nil {
						return false
					}
				}
				return true
			})
			if r := m.state(idle.addr).Load(); r.LoadRate() != 0.1 {
				t.Errorf("idle's load rate = %v (%+v), want 0.1", r.LoadRate(), r)
			}
			// Let the balancer connect to all three, then count.
			m.waitOnly(ctx, t, "idle", 5)
			counts := m.countCalls(ctx, t, 200)
			if counts["idle"] < 180 {
				t.Errorf("calls per backend %v: want nearly all on idle", counts)
			}
		})
	}
}

// TestReportedLoadChangesRanking: when the least loaded becomes the most
// loaded, calls move.
func TestReportedLoadChangesRanking(t *testing.T) {
	a := startTestBackend(t, "a", dotnetBackend, 0.1)
	b := startTestBackend(t, "b", dotnetBackend, 0.6)
	m := startMonitored(t, routing.PolicyLeastLoaded, a, b)
	ctx := testContext(t)
	m.waitOnly(ctx, t, "a", 5)
	a.rate.Store(mathFloat64bits(0.95))
	m.waitOnly(ctx, t, "b", 5)
	if counts := m.countCalls(ctx, t, 50); counts["b"] < 45 {
		t.Errorf("after a's load rose: %v", counts)
	}
}

// TestNotServingGetsNoCalls flips an instance to NOT_SERVING: after one
// health interval it gets no new calls, and after recovering it gets some
// again.
func TestNotServingGetsNoCalls(t *testing.T) {
	a := startTestBackend(t, "a", plainBackend, 0)
	b := startTestBackend(t, "b", plainBackend, 0)
	m := startMonitored(t, routing.PolicyRoundRobin, a, b)
	ctx := testContext(t)
	seen := map[string]bool{}
	testwait.For(ctx, t, "calls on both", func() bool { s, _ := m.call(ctx); seen[s] = true; return len(seen) == 2 })

	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	testwait.For(ctx, t, "a to turn unhealthy", func() bool { return !m.state(a.addr).Healthy() })
	m.waitOnly(ctx, t, "b", 10)
	if counts := m.countCalls(ctx, t, 50); counts["a"] != 0 {
		t.Errorf("calls while a is NOT_SERVING: %v", counts)
	}

	a.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	testwait.For(ctx, t, "a back in rotation", func() bool { s, _ := m.call(ctx); return s == "a" })
}

// TestNoHealthyEndpoint: with every instance NOT_SERVING, calls fail at
// once saying so.
func TestNoHealthyEndpoint(t *testing.T) {
	a := startTestBackend(t, "a", plainBackend, 0)
	m := startMonitored(t, routing.PolicyLeastLoaded, a)
	ctx := testContext(t)
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	testwait.For(ctx, t, "the call to be refused", func() bool {
		_, err := m.call(ctx)
		return status.Code(err) == codes.Unavailable && containsAll(err.Error(), "no healthy endpoint", echoService)
	})
}

// failingBackend accepts connections and fails every call with
// UNAVAILABLE, as a backend whose dependencies are down does, while its
// health service says SERVING: only passive health can catch it.
func failingBackend(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, "backend down")
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestPassiveEjection: an instance failing its calls with UNAVAILABLE is
// ejected after eject_after (3) failures in a row; a lone failing instance
// is never ejected.
func TestPassiveEjection(t *testing.T) {
	good := startTestBackend(t, "good", plainBackend, 0)
	bad := &testBackend{addr: failingBackend(t)}
	m := startMonitored(t, routing.PolicyRoundRobin, good, bad)
	ctx := testContext(t)
	failures := 0
	testwait.For(ctx, t, "bad to be ejected", func() bool {
		if _, err := m.call(ctx); err != nil {
			failures++
		}
		return m.state(bad.addr).Ejected(time.Now())
	})
	if failures > 3 {
		t.Errorf("%d calls failed before the ejection, want 3", failures)
	}
	// The balancer gets the change at the resolver's next push.
	m.waitOnly(ctx, t, "good", 10)
	for range 30 {
		if _, err := m.call(ctx); err != nil {
			t.Fatalf("call after the ejection: %v", err)
		}
	}

	lone := startMonitored(t, routing.PolicyRoundRobin, &testBackend{addr: failingBackend(t)})
	for range 10 {
		if _, err := lone.call(ctx); status.Code(err) != codes.Unavailable {
			t.Fatalf("lone failing backend: %v", err)
		}
	}
	eps, _ := lone.table.Endpoints(echoService)
	if eps[0].State.Ejected(time.Now()) {
		t.Error("the last endpoint of a service was ejected")
	}
}

// TestPortClosed: an instance whose port closes stops getting calls after
// at most a few failures.
func TestPortClosed(t *testing.T) {
	a := startTestBackend(t, "a", plainBackend, 0)
	b := startTestBackend(t, "b", plainBackend, 0)
	m := startMonitored(t, routing.PolicyRoundRobin, a, b)
	ctx := testContext(t)
	seen := map[string]bool{}
	testwait.For(ctx, t, "calls on both", func() bool { s, _ := m.call(ctx); seen[s] = true; return len(seen) == 2 })
	a.srv.Stop()
	failures := 0
	testwait.For(ctx, t, "calls to go to b alone", func() bool {
		for range 20 {
			s, err := m.call(ctx)
			if err != nil {
				failures++
				return false
			}
			if s != "b" {
				return false
			}
		}
		return true
	})
	if failures > 3 {
		t.Errorf("%d calls failed after a's port closed", failures)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// startPerCallORCABackend starts an Echo server that puts ORCA reports in
// its call trailers (CPU utilization cpu, application utilization 0.3),
// with what register adds.
func startPerCallORCABackend(t *testing.T, name string, cpu float64, register func(*grpc.Server)) *testBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	recorder := orca.NewServerMetricsRecorder()
	recorder.SetCPUUtilization(cpu)
	srv := grpc.NewServer(orca.CallMetricsServerOption(recorder), grpc.ChainUnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			// gRPC sends the trailer report when the call asked for its
			// recorder; ask, as the loadreport library does.
			if r := orca.CallMetricsRecorderFromContext(ctx); r != nil {
				r.SetApplicationUtilization(0.3)
			}
			return handler(ctx, req)
		}))
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{Name: name}))
	if register != nil {
		register(srv)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return &testBackend{name: name, addr: lis.Addr().String()}
}

// TestPerCallORCA: a backend that only puts ORCA reports in its call
// trailers is ranked from them.
func TestPerCallORCA(t *testing.T) {
	b := startPerCallORCABackend(t, "orca-call", 0.42, nil)
	m := startMonitored(t, routing.PolicyLeastLoaded, b)
	ctx := testContext(t)
	if _, err := m.call(ctx); err != nil {
		t.Fatal(err)
	}
	testwait.For(ctx, t, "a per-call report", func() bool {
		r := m.state(b.addr).Load()
		return r != nil && r.Source == "orca-call"
	})
	r := m.state(b.addr).Load()
	if r.Utilization != 0.42 || r.KnownLoadRate != 0.3 {
		t.Errorf("report %+v, want utilization 0.42 and known rate 0.3", r)
	}
}

// countingLoad answers ReportLoad and counts the polls.
type countingLoad struct {
	loadreportingpb.UnimplementedLoadReportingGrpcServer
	polls atomic.Int64
}

func (c *countingLoad) ReportLoad(context.Context, *loadreportingpb.LoadReportRequest) (*loadreportingpb.LoadReportResponse, error) {
	c.polls.Add(1)
	return &loadreportingpb.LoadReportResponse{KnownLoadRate: 0.1}, nil
}

// TestPollsPausedByCallReports: a backend that serves ReportLoad and puts
// ORCA reports in its call trailers is not polled while its calls bring
// reports, and is polled again once they stop.
func TestPollsPausedByCallReports(t *testing.T) {
	load := &countingLoad{}
	b := startPerCallORCABackend(t, "both", 0.5, func(srv *grpc.Server) {
		loadreportingpb.RegisterLoadReportingGrpcServer(srv, load)
	})
	m := startMonitored(t, routing.PolicyLeastLoaded, b) // polls every 50 ms
	ctx := testContext(t)
	testwait.For(ctx, t, "a first poll", func() bool { return load.polls.Load() > 0 })

	// 1 s of calls, one every 10 ms: per-call reports every 100 ms.
	callFor := func(d time.Duration) {
		t.Helper()
		for end := time.Now().Add(d); time.Now().Before(end); {
			if _, err := m.call(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	callFor(200 * time.Millisecond) // the first per-call report comes in
	before := load.polls.Load()
	callFor(time.Second)
	// Without the pause, 20 polls; a report's age may reach the window
	// under a loaded machine now and then.
	if polls := load.polls.Load() - before; polls > 3 {
		t.Errorf("%d polls during 1 s of calls with per-call reports, want at most 3", polls)
	}
	if r := m.state(b.addr).Load(); r == nil || r.Source != "orca-call" {
		t.Errorf("latest report %+v, want a per-call one", r)
	}
	idle := load.polls.Load()
	testwait.For(ctx, t, "polls to resume once calls stop", func() bool { return load.polls.Load() >= idle+3 })
}
