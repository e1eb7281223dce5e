package frames

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestServeLocal checks the process's own connections: their calls are
// marked Local, escape the stream limit, the idle limit and InFlight, keep
// no request for a retry, and go on while Shutdown drains the clients'
// calls.
func TestServeLocal(t *testing.T) {
	ctx := testContext(t)
	be := startBackend(t, nil)
	var mu sync.Mutex
	local := make(map[bool]int)
	var backend *Backend
	e := startEngine(t, Config{
		MaxConcurrentStreams: 2,
		MaxConnectionIdle:    50 * time.Millisecond,
		Router: routerFunc(func(r *Request) (Route, error) {
			mu.Lock()
			local[r.Local]++
			mu.Unlock()
			return Route{Backend: backend}, nil
		}),
	}, "")
	backend = dialBackend(e.Engine, be.addr)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &countingListener{Listener: tcp}
	served := make(chan error, 1)
	go func() { served <- e.ServeLocal(lis) }()
	t.Cleanup(func() {
		e.Close()
		if err := <-served; err != nil {
			t.Errorf("ServeLocal: %v", err)
		}
	})
	cc := dial(t, lis.Addr().String())

	// More streams than MaxConcurrentStreams, none counted in flight.
	const streams = 5
	var open []grpc.ClientStream
	for i := range streams {
		s, err := cc.NewStream(ctx, streamDesc, methodBidi)
		if err != nil {
			t.Fatal(err)
		}
		msg := patterned(uint32(i), 100)
		if err := s.SendMsg(&msg); err != nil {
			t.Fatal(err)
		}
		var resp []byte
		if err := s.RecvMsg(&resp); err != nil || !bytes.Equal(resp, msg) {
			t.Fatalf("stream %d: %v", i, err)
		}
		open = append(open, s)
	}
	if n := e.InFlight(); n != 0 {
		t.Errorf("InFlight with %d local calls open = %d, want 0", streams, n)
	}
	e.mu.Lock()
	for c := range e.conns {
		c.mu.Lock()
		for id, call := range c.streams {
			call.mu.Lock()
			if c.local && (!call.committed || call.replay.len() > 0) {
				t.Errorf("local stream %d keeps %d bytes of its request for a retry", id, call.replay.len())
			}
			call.mu.Unlock()
		}
		c.mu.Unlock()
	}
	e.mu.Unlock()
	client := dial(t, e.addr)
	if _, err := unary(ctx, client, methodUnary, []byte("client")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if local[true] != streams || local[false] != 1 {
		t.Errorf("routed %d calls as local and %d as not, want %d and 1", local[true], local[false], streams)
	}
	mu.Unlock()

	// Idle far past MaxConnectionIdle, the local connection stays.
	for _, s := range open {
		_ = s.CloseSend()
		var resp []byte
		if err := s.RecvMsg(&resp); err == nil {
			t.Fatal("stream went on after its close")
		}
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := unary(ctx, cc, methodUnary, []byte("later")); err != nil {
		t.Fatal(err)
	}
	if n := lis.accepted.Load(); n != 1 {
		t.Errorf("local connections accepted = %d, want 1 (the idle limit sent it away)", n)
	}

	// Shutdown does not wait for a local call, and ends it as it closes.
	watch, err := cc.NewStream(ctx, streamDesc, methodBidi)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("open")
	if err := watch.SendMsg(&msg); err != nil {
		t.Fatal(err)
	}
	var resp []byte
	if err := watch.RecvMsg(&resp); err != nil {
		t.Fatal(err)
	}
	shutdownCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.Shutdown(shutdownCtx); err != nil {
		t.Errorf("Shutdown with a local call open: %v", err)
	}
	if err := watch.RecvMsg(&resp); status.Code(err) != codes.Unavailable {
		t.Errorf("local call after Shutdown: %v, want UNAVAILABLE", err)
	}
}
