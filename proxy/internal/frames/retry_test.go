package frames

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// retryRouter sends a call's first attempt to first, later ones to
// second, and counts the attempts Done saw end.
type retryRouter struct {
	first, second *Backend
	ended         atomic.Int64
}

func (r *retryRouter) Route(req *Request) (Route, error) {
	b := r.first
	if slices.Contains(req.Tried, r.first) {
		b = r.second
	}
	return Route{Backend: b, Done: func(Result) { r.ended.Add(1) }}, nil
}

// TestRetryUnavailableReplaysRequest: the first backend turns a
// client-streaming call down with UNAVAILABLE before answering; with
// RetryDelay allowing it, the call goes to the second backend, which gets
// every request byte once.
func TestRetryUnavailableReplaysRequest(t *testing.T) {
	ctx := testContext(t)
	var turnedDown atomic.Int64
	refusing := startBackend(t, func(_ any, ss grpc.ServerStream) error {
		var req []byte
		_ = ss.RecvMsg(&req) // the call has reached it
		turnedDown.Add(1)
		return status.Error(codes.Unavailable, "overloaded")
	})
	counting := startBackend(t, nil)
	router := &retryRouter{}
	var delays atomic.Int64
	e := startEngine(t, Config{
		Router: router,
		RetryDelay: func(_ *Request, attempts int) (time.Duration, bool) {
			delays.Add(1)
			return time.Millisecond, attempts < 3
		},
	}, "")
	router.first, router.second = dialBackend(e.Engine, refusing.addr), dialBackend(e.Engine, counting.addr)
	cc := dial(t, e.addr)

	s, err := cc.NewStream(ctx, streamDesc, methodClientStream)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for i := range uint32(20) {
		msg := patterned(i, 3000+int(i))
		total += uint64(len(msg))
		if err := s.SendMsg(&msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var resp []byte
	if err := s.RecvMsg(&resp); err != nil {
		t.Fatalf("the retried call failed: %v", err)
	}
	if got := binary.BigEndian.Uint64(resp); got != total {
		t.Errorf("the second backend got %d request bytes, want %d", got, total)
	}
	if turnedDown.Load() != 1 || delays.Load() != 1 {
		t.Errorf("first backend turned down %d attempts, RetryDelay asked %d times; want 1 and 1", turnedDown.Load(), delays.Load())
	}
	testwait.For(ctx, t, "both attempts' Done", func() bool { return router.ended.Load() == 2 })
}

// TestRetryNotAfterResponseHeaders: once the backend's response headers
// reached the client, UNAVAILABLE is the call's status: no retry.
func TestRetryNotAfterResponseHeaders(t *testing.T) {
	ctx := testContext(t)
	var reached atomic.Int64
	failing := startBackend(t, func(_ any, ss grpc.ServerStream) error {
		reached.Add(1)
		if err := ss.SendHeader(nil); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "gone mid-call")
	})
	router := &retryRouter{}
	e := startEngine(t, Config{
		Router:     router,
		RetryDelay: func(*Request, int) (time.Duration, bool) { return 0, true },
	}, "")
	router.first = dialBackend(e.Engine, failing.addr)
	router.second = router.first
	_, err := unary(ctx, dial(t, e.addr), methodUnary, []byte("x"))
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "gone mid-call" {
		t.Fatalf("status %v, want the backend's UNAVAILABLE", st)
	}
	if n := reached.Load(); n != 1 {
		t.Errorf("the backend saw %d attempts, want 1", n)
	}
}

// TestRetryUnreachableFailsOver: the first backend cannot be reached; the
// call, never sent, goes to the second, its request intact. (A retry in
// the middle of a message: TestRetryMidMessage.)
func TestRetryUnreachableFailsOver(t *testing.T) {
	ctx := testContext(t)
	counting := startBackend(t, nil)
	router := &retryRouter{}
	e := startEngine(t, Config{Router: router}, "")
	router.first = e.Backend("unreachable", "unreachable", func(ctx context.Context) (net.Conn, error) {
		return nil, errors.New("no route to the test's backend")
	}, nil)
	router.second = dialBackend(e.Engine, counting.addr)
	s, err := dial(t, e.addr).NewStream(ctx, streamDesc, methodClientStream)
	if err != nil {
		t.Fatal(err)
	}
	msg := patterned(1, 8<<10)
	for range 30 {
		if err := s.SendMsg(&msg); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.CloseSend()
	var resp []byte
	if err := s.RecvMsg(&resp); err != nil {
		t.Fatalf("the call failed: %v", err)
	}
	if got := binary.BigEndian.Uint64(resp); got != 30*8<<10 {
		t.Errorf("the second backend got %d bytes, want %d", got, 30*8<<10)
	}
}
