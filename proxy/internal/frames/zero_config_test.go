package frames

import (
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestZeroConfigDefaults: fields of Config left zero get working defaults
// (as New does for DialTimeout, ConnectionTimeout, ...), or New refuses
// them. The proxy always sets both (proxy/limits.go validates
// keepalive.timeout; max_message_size defaults to 64 MiB), so only other
// users of the engine would meet these.
func TestZeroConfigDefaults(t *testing.T) {
	ctx := testContext(t)
	t.Run("keepalive timeout", func(t *testing.T) {
		e := startEngine(t, Config{Keepalive: Keepalive{Time: 30 * time.Millisecond}}, "")
		_, frames := dialRawClient(t, e.addr, true)
		for range 3 {
			nextFrame(ctx, t, frames, "a keepalive ping", func(f rawFrame) bool { return f.Ping })
		}
	})
	t.Run("max message size", func(t *testing.T) {
		b := startBackend(t, nil)
		var late lateRouter
		e, err := New(Config{Router: &late, Logger: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		late.set(staticRouter{dialBackend(e, b.addr)})
		// Served as startEngine does, without its MaxMessageSize.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Serve(lis) }()
		t.Cleanup(func() { e.Close(); <-done })
		_, err = unary(ctx, dial(t, lis.Addr().String()), methodUnary, []byte("hello"))
		if status.Code(err) != codes.OK {
			t.Errorf("a 5-byte message with MaxMessageSize unset: %v", err)
		}
	})
}
