package proxy_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// startRetryProxy serves a proxy balancing Echo round robin over addrs,
// with Echo/Unary idempotent, no health checks and no ejection: only
// connections and answers decide. (Every attempt counts for passive
// health: with ejection on, the failing backend would be out after 5.)
func startRetryProxy(t *testing.T, addrs ...string) examplev1.EchoClient {
	t.Helper()
	table := routing.NewTable()
	table.SetPassiveHealth(routing.PassiveHealth{}, nil)
	if err := routing.LoadStatic(table, []routing.ServiceConfig{{Name: echoService, Endpoints: addrs}}); err != nil {
		t.Fatal(err)
	}
	router := newTestRouter(t, routing.Options{
		Table:         table,
		DefaultPolicy: routing.PolicyRoundRobin,
		Retry:         routing.RetryConfig{IdempotentMethods: []string{echoService + "/Unary"}},
		DialOptions:   []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))},
	})
	addr, _ := serveProxy(t, proxy.Options{Config: proxy.DefaultConfig(), Router: router})
	return examplev1.NewEchoClient(dial(t, addr))
}

// startReadThenUnavailable serves a backend that reads each call's
// requests to the end (so they have all reached it) and fails the call
// with UNAVAILABLE before sending headers, as a backend shutting down
// does. It counts the calls.
func startReadThenUnavailable(t *testing.T, calls *atomic.Int64) string {
	t.Helper()
	return startRawBackend(t, func(_ any, ss grpc.ServerStream) error {
		calls.Add(1)
		for {
			err := ss.RecvMsg(new(examplev1.EchoRequest))
			if errors.Is(err, io.EOF) {
				return status.Error(codes.Unavailable, "shutting down")
			}
			if err != nil {
				return err
			}
		}
	})
}

// TestRetryThroughProxy checks the proxy's retries: an idempotent call failed with UNAVAILABLE by the backend it
// reached is sent again, frames intact, to another endpoint; a call of a
// method not listed is never sent twice; a request larger than the retry
// buffer (256 KiB) is not retried.
func TestRetryThroughProxy(t *testing.T) {
	var failing atomic.Int64
	bad := startReadThenUnavailable(t, &failing)
	good := startBackend(t, "good")
	client := startRetryProxy(t, bad, good.addr)
	ctx := testContext(t)

	payload := make([]byte, 64<<10)
	_, _ = rand.Read(payload)
	for calls := 0; failing.Load() < 10; calls++ {
		if calls > 1000 {
			t.Fatal("the failing backend got no calls")
		}
		resp, err := client.Unary(ctx, &examplev1.EchoRequest{Payload: payload})
		if err != nil {
			t.Fatalf("idempotent call: %v, want it retried on the good backend", err)
		}
		if resp.GetServer() != "good" || !bytes.Equal(resp.GetPayload(), payload) {
			t.Fatalf("answered by %q with %d bytes, want the good backend echoing the %d bytes sent",
				resp.GetServer(), len(resp.GetPayload()), len(payload))
		}
	}

	big := make([]byte, 300<<10)
	for {
		before := failing.Load()
		_, err := client.Unary(ctx, &examplev1.EchoRequest{Payload: big})
		if failing.Load() == before {
			if err != nil {
				t.Fatalf("a big call on the good backend: %v", err)
			}
			continue
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("a big idempotent call that reached the failing backend: %v, want its UNAVAILABLE (not retried)", err)
		}
		break
	}

	before, failed := failing.Load(), int64(0)
	for failed < 3 {
		stream, err := client.ServerStream(ctx, &examplev1.EchoRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "shutting down" {
			t.Fatalf("stream: %v, want the backend's UNAVAILABLE verbatim", err)
		}
		failed++
	}
	if got := failing.Load() - before; got != failed {
		t.Fatalf("%d failed calls of a method not listed reached the backend %d times", failed, got)
	}
}

// TestRetryBackendGoingAway stops a backend gracefully (GOAWAY) and
// refuses new connections to it, under calls of a method not listed as
// idempotent: none fails (a call sent on the connection after the backend
// stopped taking new ones is retried transparently, the backend having
// said it did not process it), and once the backend is gone every call
// goes to the other (the picker skips the endpoint whose connection
// failed).
func TestRetryBackendGoingAway(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	cutter := startConnCutter(t, a.addr)
	client := startRetryProxy(t, cutter.addr, b.addr)
	ctx := testContext(t)
	call := func(i int) string {
		t.Helper()
		stream, err := client.ServerStream(ctx, &examplev1.EchoRequest{ResponseCount: 2})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		var server string
		for range 2 {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			server = resp.GetServer()
		}
		return server
	}
	seen := map[string]bool{}
	for i := 0; len(seen) < 2; i++ {
		seen[call(i)] = true
	}
	cutter.refuse.Store(true)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.srv.GracefulStop()
	}()
	for i := 0; ; i++ {
		call(i)
		select {
		case <-stopped:
		default:
			continue
		}
		break
	}
	for i := range 20 {
		if server := call(i); server != "b" {
			t.Fatalf("call %d after the backend stopped answered by %q", i, server)
		}
	}
}
