package routing_test

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing"
)

func TestRetryConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		change  func(*routing.RetryConfig)
		wantErr string
	}{
		{name: "defaults", change: func(*routing.RetryConfig) {}},
		{name: "methods", change: func(c *routing.RetryConfig) {
			c.IdempotentMethods = []string{"pkg.Svc/Get", "other.Svc/*"}
		}},
		{name: "no retries", change: func(c *routing.RetryConfig) { c.MaxAttempts = 1 }},
		{name: "no slash", change: func(c *routing.RetryConfig) { c.IdempotentMethods = []string{"pkg.Svc/Get", "pkg.Svc.Get"} },
			wantErr: `retry.idempotent_methods[1]: "pkg.Svc.Get" is not service/method`},
		{name: "leading slash", change: func(c *routing.RetryConfig) { c.IdempotentMethods = []string{"/pkg.Svc/Get"} },
			wantErr: `retry.idempotent_methods[0]: "/pkg.Svc/Get": service name is empty`},
		{name: "empty method", change: func(c *routing.RetryConfig) { c.IdempotentMethods = []string{"pkg.Svc/"} },
			wantErr: `retry.idempotent_methods[0]: "pkg.Svc/": the method "" is empty`},
		{name: "partial wildcard", change: func(c *routing.RetryConfig) { c.IdempotentMethods = []string{"pkg.Svc/Get*"} },
			wantErr: `the method "Get*" is empty or holds`},
		{name: "attempts", change: func(c *routing.RetryConfig) { c.MaxAttempts = 6 },
			wantErr: "retry.max_attempts: 6, want 1 to 5"},
		{name: "zero attempts", change: func(c *routing.RetryConfig) { c.MaxAttempts = 0 },
			wantErr: "retry.max_attempts: 0, want 1 to 5"},
		{name: "backoff", change: func(c *routing.RetryConfig) { c.InitialBackoff = -time.Second },
			wantErr: "retry.initial_backoff: -1s, want more than 0"},
		{name: "max backoff", change: func(c *routing.RetryConfig) { c.MaxBackoff = time.Millisecond },
			wantErr: "retry.max_backoff: 1ms is less than retry.initial_backoff 10ms"},
		{name: "tokens", change: func(c *routing.RetryConfig) { c.Budget.MaxTokens = 1001 },
			wantErr: "retry.budget.max_tokens: 1001, want more than 0 and at most 1000"},
		{name: "ratio", change: func(c *routing.RetryConfig) { c.Budget.TokenRatio = 0 },
			wantErr: "retry.budget.token_ratio: 0, want more than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := routing.DefaultRetryConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate: %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestBackendConfigValidate(t *testing.T) {
	if err := routing.DefaultBackendConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	off := routing.BackendConfig{KeepaliveTimeout: time.Second}
	if err := off.Validate(); err != nil {
		t.Fatalf("keepalive off: %v", err)
	}
	low := routing.BackendConfig{KeepaliveTime: time.Second, KeepaliveTimeout: time.Second}
	if err := low.Validate(); err == nil || !strings.Contains(err.Error(), "backends.keepalive_time: 1s, want 0 (off) or at least 10s") {
		t.Fatalf("keepalive_time 1s: %v", err)
	}
	noTimeout := routing.BackendConfig{KeepaliveTime: time.Minute}
	if err := noTimeout.Validate(); err == nil || !strings.Contains(err.Error(), "backends.keepalive_timeout: 0s") {
		t.Fatalf("keepalive_timeout 0: %v", err)
	}
	if _, err := routing.NewRouter(routing.Options{Table: routing.NewTable(), Backend: low}); err == nil {
		t.Fatal("NewRouter took keepalive_time 1s")
	}
}

// unavailableBackend fails every call with UNAVAILABLE before sending
// headers, as a backend going away does, and counts the calls. It reads
// the requests first: grpc-go (1.85) returns a bare io.EOF from a unary
// call whose status came before its request was sent and that is not
// retried.
func unavailableBackend(t *testing.T, calls *atomic.Int64) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		calls.Add(1)
		for {
			if err := ss.RecvMsg(new(examplev1.EchoRequest)); errors.Is(err, io.EOF) {
				return status.Error(codes.Unavailable, "going away")
			} else if err != nil {
				return err
			}
		}
	}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// TestRetryIdempotentMethods checks that a call of a method configured as
// idempotent that its backend fails with UNAVAILABLE is placed on another
// endpoint, and that a call of any other method is not sent again.
func TestRetryIdempotentMethods(t *testing.T) {
	var failed atomic.Int64
	bad, good := unavailableBackend(t, &failed), startEcho(t, "good")
	table := routing.NewTable()
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{{Addr: bad}, {Addr: good}})
	r := newRouter(t, table, routing.Options{
		DefaultPolicy: routing.PolicyRoundRobin,
		Retry:         routing.RetryConfig{IdempotentMethods: []string{echoService + "/Unary"}},
	})
	ctx := testContext(t)
	cc, err := r.Conn(echoService)
	if err != nil {
		t.Fatal(err)
	}
	client := examplev1.NewEchoClient(cc)

	for failed.Load() < 10 {
		resp, err := client.Unary(ctx, &examplev1.EchoRequest{})
		if err != nil {
			t.Fatalf("idempotent call failed: %v", err)
		}
		if resp.GetServer() != "good" {
			t.Fatalf("answered by %q", resp.GetServer())
		}
	}

	// ServerStream is not listed: a call the bad backend fails is not
	// sent again, to it or anywhere.
	before, fails := failed.Load(), int64(0)
	for fails < 5 {
		stream, err := client.ServerStream(ctx, &examplev1.EchoRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("stream failed with %v, want the backend's UNAVAILABLE", err)
		}
		fails++
	}
	if got := failed.Load() - before; got != fails {
		t.Fatalf("%d failed stream calls reached the failing backend %d times: they were retried", fails, got)
	}
}

// TestRetryBudget checks that retries stop when the budget is spent.
func TestRetryBudget(t *testing.T) {
	var calls atomic.Int64
	bad := unavailableBackend(t, &calls)
	table := routing.NewTable()
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{{Addr: bad}})
	r := newRouter(t, table, routing.Options{Retry: routing.RetryConfig{
		IdempotentMethods: []string{echoService + "/*"},
		MaxAttempts:       5,
		InitialBackoff:    time.Millisecond,
		MaxBackoff:        time.Millisecond,
		Budget:            routing.RetryBudget{MaxTokens: 4, TokenRatio: 0.1},
	}})
	ctx := testContext(t)
	cc, err := r.Conn(echoService)
	if err != nil {
		t.Fatal(err)
	}
	client := examplev1.NewEchoClient(cc)
	// With 4 tokens, retries stop once half are gone: the first call's
	// first failure leaves 3 (retried), its second 2 (not retried); every
	// later call makes a single attempt, where 5 attempts would be allowed.
	for range 5 {
		if _, err := client.Unary(ctx, &examplev1.EchoRequest{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("call to a failing backend: %v, want UNAVAILABLE", err)
		}
	}
	if got := calls.Load(); got != 2+4 {
		t.Fatalf("5 calls made %d attempts, want 6 (a budget of 4 tokens)", got)
	}
}
