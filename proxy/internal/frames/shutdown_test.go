package frames

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// heldBackend serves calls that echo one message, then wait for release
// (or their end) before answering the second time.
func heldBackend(t *testing.T, started chan<- struct{}, release <-chan struct{}) *testBackend {
	return startBackend(t, func(_ any, ss grpc.ServerStream) error {
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		started <- struct{}{}
		select {
		case <-release:
		case <-ss.Context().Done():
			return ss.Context().Err()
		}
		return ss.SendMsg(&req)
	})
}

// accepting reports whether addr takes new connections.
func accepting(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// TestShutdownWaitsForCalls: Shutdown stops taking connections at once,
// lets the calls in flight end, then returns nil; no goroutine of the
// engine is left.
func TestShutdownWaitsForCalls(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	ctx := testContext(t)
	started, release := make(chan struct{}, 1), make(chan struct{})
	b := heldBackend(t, started, release)
	e := startEngine(t, Config{}, b.addr)
	cc := dial(t, e.addr)

	result := make(chan error, 1)
	go func() {
		resp, err := unary(ctx, cc, methodUnary, []byte("in flight"))
		if err == nil && !bytes.Equal(resp, []byte("in flight")) {
			err = errors.New("response differs")
		}
		result <- err
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the call never reached the backend")
	}
	shutdown := make(chan error, 1)
	go func() { shutdown <- e.Shutdown(ctx) }()
	testwait.For(ctx, t, "the listener to close", func() bool { return !accepting(e.addr) })
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) with a call in flight", err)
	default:
	}
	close(release)
	if err := <-result; err != nil {
		t.Errorf("the call in flight failed: %v", err)
	}
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Shutdown did not return once the call ended")
	}
	if n := e.InFlight(); n != 0 {
		t.Errorf("%d calls in flight after Shutdown", n)
	}
	// Stop the test's own client and backend: what is left is the
	// engine's.
	_ = cc.Close()
	b.srv.Stop()
	goleak.VerifyNone(t, ignore)
}

// TestShutdownExpiredContext: with its context done, Shutdown cuts the
// calls in flight, says how many, and still closes everything.
func TestShutdownExpiredContext(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	ctx := testContext(t)
	started := make(chan struct{}, 2)
	b := heldBackend(t, started, nil)
	e := startEngine(t, Config{}, b.addr)
	cc := dial(t, e.addr)
	results := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := unary(ctx, cc, methodUnary, []byte("x"))
			results <- err
		}()
	}
	for range 2 {
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("the calls never reached the backend")
		}
	}
	expired, cancel := context.WithCancel(ctx)
	cancel()
	err := e.Shutdown(expired)
	if err == nil || !strings.Contains(err.Error(), "2 calls in flight were cancelled") {
		t.Errorf("Shutdown = %v, want the 2 calls in flight cancelled", err)
	}
	for range 2 {
		if err := <-results; status.Code(err) == codes.OK {
			t.Error("a call cut by Shutdown succeeded")
		}
	}
	if n := e.InFlight(); n != 0 {
		t.Errorf("%d calls in flight after Shutdown", n)
	}
	_ = cc.Close()
	b.srv.Stop()
	goleak.VerifyNone(t, ignore)
}

// TestShutdownIdle: an engine without calls shuts down at once, its
// clients told by a GOAWAY, and Serve returns.
func TestShutdownIdle(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{}, "")
	_, frames := dialRawClient(t, e.addr, true)
	nextFrame(ctx, t, frames, "SETTINGS", isType(http2.FrameSettings))
	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var goAway bool
	for _, f := range waitClosed(ctx, t, frames) {
		goAway = goAway || f.Type == http2.FrameGoAway
	}
	if !goAway {
		t.Error("the client got no GOAWAY")
	}
	if accepting(e.addr) {
		t.Error("the engine still accepts connections")
	}
}
