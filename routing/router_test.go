package routing_test

import (
	"context"
	"log/slog"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing"
)

const echoService = "quaestor.example.v1.Echo"

func startEcho(t *testing.T, name string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	examplev1.RegisterEchoServer(srv, echo.New(echo.Options{Name: name}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func newRouter(t *testing.T, table *routing.Table, opts routing.Options) *routing.Router {
	t.Helper()
	opts.Table = table
	r, err := routing.NewRouter(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestNewRouterRefusesBadOptions(t *testing.T) {
	if _, err := routing.NewRouter(routing.Options{}); err == nil || !strings.Contains(err.Error(), "Options.Table is required") {
		t.Errorf("no table: %v", err)
	}
	_, err := routing.NewRouter(routing.Options{Table: routing.NewTable(), DefaultPolicy: "fastest"})
	if err == nil || !strings.Contains(err.Error(), `unknown policy "fastest"`) {
		t.Errorf("bad policy: %v", err)
	}
	_, err = routing.NewRouter(routing.Options{Table: routing.NewTable(), ServicePolicies: map[string]string{"a.B": "nope"}})
	if err == nil || !strings.Contains(err.Error(), `policy of service "a.B"`) {
		t.Errorf("bad service policy: %v", err)
	}
}

func TestRouterUnknownService(t *testing.T) {
	r := newRouter(t, routing.NewTable(), routing.Options{})
	_, err := r.Conn("nosuch.Svc")
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), `unknown service "nosuch.Svc"`) {
		t.Fatalf("Conn of an unknown service: %v", err)
	}
}

// callEcho makes one Echo call on the router's connection and returns
// which server answered.
func callEcho(ctx context.Context, t *testing.T, r *routing.Router) string {
	t.Helper()
	cc, err := r.Conn(echoService)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := examplev1.NewEchoClient(cc).Unary(ctx, &examplev1.EchoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetServer()
}

// TestRouterFollowsTable checks that the per-service connection places
// calls on what the table holds now, as it changes.
func TestRouterFollowsTable(t *testing.T) {
	a, b := startEcho(t, "a"), startEcho(t, "b")
	table := routing.NewTable()
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{{Addr: a}})
	r := newRouter(t, table, routing.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	call := func() string { return callEcho(ctx, t, r) }
	// waitOnly calls until n calls in a row were answered by want alone.
	waitOnly := func(want string) {
		t.Helper()
		for inARow := 0; inARow < 20; {
			if ctx.Err() != nil {
				t.Fatalf("calls never went to %s alone", want)
			}
			if call() == want {
				inARow++
			} else {
				inARow = 0
			}
		}
	}
	waitOnly("a")

	table.Update(echoService, "etcd", []routing.Endpoint{{Addr: b}})
	seen := map[string]bool{}
	for len(seen) < 2 && ctx.Err() == nil {
		seen[call()] = true
	}
	if !seen["b"] {
		t.Fatal("an added endpoint got no calls")
	}

	table.Update(echoService, routing.SourceStatic, nil)
	waitOnly("b")

	// With no endpoints left, calls fail at once, saying why. The
	// resolver pushes asynchronously: poll until it has.
	table.Update(echoService, "etcd", nil)
	for {
		_, err := r.Conn(echoService)
		if status.Code(err) == codes.Unavailable {
			if !strings.Contains(err.Error(), "has no endpoints") {
				t.Fatalf("Conn with no endpoints: %v", err)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Conn with no endpoints kept answering: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestRouterFailover(t *testing.T) {
	a, b := startEcho(t, "a"), startEcho(t, "b")
	table := routing.NewTable()
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{
		{Addr: a, Metadata: map[string]string{"priority": "1"}},
		{Addr: b, Metadata: map[string]string{"priority": "0"}},
	})
	r := newRouter(t, table, routing.Options{ServicePolicies: map[string]string{echoService: routing.PolicyFailover}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	call := func() string { return callEcho(ctx, t, r) }
	// Until b, the first in priority, is connected, a may answer.
	for call() != "b" {
		if ctx.Err() != nil {
			t.Fatal("calls never reached the first in priority")
		}
	}
	for range 20 {
		if got := call(); got != "b" {
			t.Fatalf("failover moved from b to %s with b up", got)
		}
	}
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{{Addr: a, Metadata: map[string]string{"priority": "1"}}})
	for call() != "a" {
		if ctx.Err() != nil {
			t.Fatal("calls never failed over to a")
		}
	}
}

var quietLogger = slog.New(slog.DiscardHandler)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mathFloat64bits(f float64) uint64     { return math.Float64bits(f) }
func mathFloat64frombits(b uint64) float64 { return math.Float64frombits(b) }
