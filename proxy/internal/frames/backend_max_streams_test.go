package frames

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// countingListener counts the connections it accepted and those still
// open.
type countingListener struct {
	net.Listener
	accepted, open atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// TestBackendMaxStreamsConnections: a backend allows 2 concurrent streams
// per connection (grpc.MaxConcurrentStreams(2)); 5 bursts of 6 calls go to
// it. No call may fail, and the connections made for a burst must not
// stay open once idle.
func TestBackendMaxStreamsConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(testContext(t), 10*time.Second)
	defer cancel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &countingListener{Listener: inner}
	release := make(chan struct{})
	var started atomic.Int64
	srv := grpc.NewServer(grpc.MaxConcurrentStreams(2), grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		started.Add(1)
		<-release
		return ss.SendMsg(&req)
	}))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	e := startEngine(t, Config{}, inner.Addr().String())
	cc := dial(t, e.addr)
	for round := range 5 {
		release = make(chan struct{})
		started.Store(0)
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				if _, err := unary(ctx, cc, methodUnary, []byte("x")); err != nil {
					t.Errorf("round %d: %v", round, err)
				}
			})
		}
		testwait.For(ctx, t, "6 calls at the backend", func() bool { return started.Load() == 6 })
		close(release)
		wg.Wait()
		t.Logf("round %d: backend accepted %d connections, %d open", round, lis.accepted.Load(), lis.open.Load())
	}
	testwait.For(ctx, t, "idle spare connections to close", func() bool { return lis.open.Load() <= 3 })
}
