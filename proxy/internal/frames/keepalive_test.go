package frames

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

func isType(typ http2.FrameType) func(rawFrame) bool {
	return func(f rawFrame) bool { return f.Type == typ }
}

// TestKeepaliveUnansweredPing: a client that stops answering pings is
// closed once Keepalive.Time and Timeout are over; one that answers is
// not.
func TestKeepaliveUnansweredPing(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{Keepalive: Keepalive{Time: 50 * time.Millisecond, Timeout: 50 * time.Millisecond}}, "")

	_, answering := dialRawClient(t, e.addr, true)
	_, silent := dialRawClient(t, e.addr, false)
	nextFrame(ctx, t, silent, "a keepalive ping", func(f rawFrame) bool { return f.Ping })
	waitClosed(ctx, t, silent)
	// The answering client has been pinged several times meanwhile, and
	// is still connected.
	for i := range 3 {
		nextFrame(ctx, t, answering, fmt.Sprintf("keepalive ping %d", i+1), func(f rawFrame) bool { return f.Ping })
	}
	select {
	case f, ok := <-answering:
		if !ok || f.Type == http2.FrameGoAway {
			t.Fatalf("a client answering pings was sent away (frame %v, open %v)", f.Type, ok)
		}
	default:
	}
}

// TestKeepalivePingFlood: a client pinging more often than MinTime is sent
// a GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and closed.
func TestKeepalivePingFlood(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{Keepalive: Keepalive{MinTime: time.Minute, PermitWithoutStream: true}}, "")
	c, frames := dialRawClient(t, e.addr, true)
	for i := range 10 {
		if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{byte(i)}) }); err != nil {
			break // closed already
		}
	}
	f := nextFrame(ctx, t, frames, "GOAWAY", isType(http2.FrameGoAway))
	if f.Code != http2.ErrCodeEnhanceYourCalm || f.Debug != "too_many_pings" {
		t.Errorf("GOAWAY %v %q, want ENHANCE_YOUR_CALM \"too_many_pings\"", f.Code, f.Debug)
	}
	seen := waitClosed(ctx, t, frames)
	acks := 0
	for _, f := range seen {
		if f.Type == http2.FramePing {
			acks++
		}
	}
	if acks > 0 {
		t.Errorf("%d pings answered after the GOAWAY", acks)
	}
}

// TestKeepalivePingsTolerated: pings no more often than MinTime, or ones
// that follow the proxy's data, do not send a client away.
func TestKeepalivePingsTolerated(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{Keepalive: Keepalive{MinTime: time.Millisecond, PermitWithoutStream: true}}, "")
	c, frames := dialRawClient(t, e.addr, true)
	for i := range 5 {
		time.Sleep(2 * time.Millisecond) // pacing the pings MinTime apart, not waiting for a condition
		if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{byte(i)}) }); err != nil {
			t.Fatal(err)
		}
		f := nextFrame(ctx, t, frames, "ping ack", func(f rawFrame) bool { return f.Type == http2.FramePing || f.Type == http2.FrameGoAway })
		if f.Type == http2.FrameGoAway {
			t.Fatalf("client sent away after ping %d: %v %q", i, f.Code, f.Debug)
		}
	}
}

// TestMaxConnectionIdle: a client without a call for MaxConnectionIdle is
// sent a GOAWAY (NO_ERROR) and the connection closes.
func TestMaxConnectionIdle(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{MaxConnectionIdle: 50 * time.Millisecond}, "")
	_, frames := dialRawClient(t, e.addr, true)
	f := nextFrame(ctx, t, frames, "GOAWAY", isType(http2.FrameGoAway))
	if f.Code != http2.ErrCodeNo {
		t.Errorf("GOAWAY code %v, want NO_ERROR", f.Code)
	}
	waitClosed(ctx, t, frames)
}

// TestMaxConnectionAge: a client connection older than MaxConnectionAge is
// sent a GOAWAY; its open call still runs to its end, then the connection
// closes. With MaxConnectionAgeGrace, the call is cut when the grace is
// over.
func TestMaxConnectionAge(t *testing.T) {
	ctx := testContext(t)
	b := startBackend(t, nil)

	t.Run("call ends", func(t *testing.T) {
		e := startEngine(t, Config{MaxConnectionAge: 100 * time.Millisecond}, b.addr)
		c, frames := dialRawClient(t, e.addr, true)
		if err := c.headers(1, false, grpcRequestHeaders(methodBidi)...); err != nil {
			t.Fatal(err)
		}
		f := nextFrame(ctx, t, frames, "GOAWAY", isType(http2.FrameGoAway))
		if f.Code != http2.ErrCodeNo || f.StreamID != 0 {
			t.Errorf("GOAWAY %v, want NO_ERROR", f.Code)
		}
		msg := grpcMessage([]byte("still here"))
		if err := c.write(func(w *http2.Framer) error { return w.WriteData(1, true, msg) }); err != nil {
			t.Fatal(err)
		}
		var data int
		var status string
		for _, f := range waitClosed(ctx, t, frames) {
			if f.StreamID == 1 && f.Type == http2.FrameData {
				data += f.Data
			}
			if f.StreamID == 1 && f.Type == http2.FrameHeaders && f.Flags.Has(http2.FlagHeadersEndStream) {
				status = fieldValue(f.Headers, "grpc-status")
			}
		}
		if data != len(msg) || status != "0" {
			t.Errorf("after the GOAWAY the call got %d bytes and grpc-status %q, want %d and 0", data, status, len(msg))
		}
	})
	t.Run("grace over", func(t *testing.T) {
		e := startEngine(t, Config{MaxConnectionAge: 100 * time.Millisecond, MaxConnectionAgeGrace: 50 * time.Millisecond}, b.addr)
		c, frames := dialRawClient(t, e.addr, true)
		if err := c.headers(1, false, grpcRequestHeaders(methodBidi)...); err != nil {
			t.Fatal(err)
		}
		nextFrame(ctx, t, frames, "GOAWAY", isType(http2.FrameGoAway))
		waitClosed(ctx, t, frames)
		testwait.For(ctx, t, "the cut call to end", func() bool { return e.InFlight() == 0 })
	})
}
