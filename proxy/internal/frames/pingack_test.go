package frames

import (
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPingAnswerWaits: a PING with nothing else to send to its peer is
// answered within pingAckDelay; the first, which starts the engine's
// flusher, once pingAckDelay is over. Later ones wait for the flusher's
// next round.
func TestPingAnswerWaits(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{}, "")
	c, frames := dialRawClient(t, e.addr, true)
	// Once the engine has answered the client's SETTINGS, it has
	// nothing else to send.
	nextFrame(ctx, t, frames, "SETTINGS answer", func(f rawFrame) bool {
		return f.Type == http2.FrameSettings && f.Flags.Has(http2.FlagSettingsAck)
	})
	for i := range 3 {
		sent := time.Now()
		if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{'p', byte(i)}) }); err != nil {
			t.Fatal(err)
		}
		nextFrame(ctx, t, frames, "PING answer", func(f rawFrame) bool { return f.Type == http2.FramePing && !f.Ping })
		if waited := time.Since(sent); i == 0 && waited < pingAckDelay {
			t.Errorf("first ping answered after %s, want at least %s", waited, pingAckDelay)
		}
	}
}

// TestPingAnswerGoesWithFrames: the answer to a PING goes out with the
// next frames to its peer, here a call's status, without waiting. The
// engine's delay is an hour, so an answer that comes came with them.
func TestPingAnswerGoesWithFrames(t *testing.T) {
	ctx := testContext(t)
	refuse := routerFunc(func(*Request) (Route, error) { return Route{}, status.Error(codes.Unavailable, "no backend") })
	e := startEngine(t, Config{Router: refuse, pingAckDelay: time.Hour}, "")
	c, frames := dialRawClient(t, e.addr, true)
	nextFrame(ctx, t, frames, "SETTINGS", isType(http2.FrameSettings))
	if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{'q'}) }); err != nil {
		t.Fatal(err)
	}
	if err := c.headers(1, true, grpcRequestHeaders("/test.Echo/Unary")...); err != nil {
		t.Fatal(err)
	}
	first := nextFrame(ctx, t, frames, "PING answer or the call's status", func(f rawFrame) bool {
		return (f.Type == http2.FramePing && !f.Ping) || f.Type == http2.FrameHeaders
	})
	if first.Type != http2.FramePing {
		t.Fatalf("first frame %v, want the PING answer ahead of the status", first.Type)
	}
	status := nextFrame(ctx, t, frames, "the call's status", isType(http2.FrameHeaders))
	if got := fieldValue(status.Headers, "grpc-status"); got != "14" {
		t.Errorf("grpc-status %q, want 14", got)
	}
}
