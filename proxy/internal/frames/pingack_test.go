package frames

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPingAnswerWaits: a PING with nothing else to send to its peer,
// and no DATA or HEADERS sent to it since its last PING (a keepalive
// probe), is answered once pingAckDelay is over, though answers to
// PINGs after data may wait an hour. A PING that comes while the
// previous answer is being written waits too.
func TestPingAnswerWaits(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{pingAckPatience: time.Hour}, "")
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
		nextFrame(ctx, t, frames, "PING answer", isPingAnswer)
		if waited := time.Since(sent); waited < pingAckDelay {
			t.Errorf("ping %d answered after %s, want at least %s", i, waited, pingAckDelay)
		}
	}
}

// TestPingAfterDataWaitsForCompany: a PING that follows the proxy's
// HEADERS to its peer (here a call's status), a bandwidth estimate, is
// not answered on its own within the prompt delay: its answer goes out
// with the next call's status, after it.
func TestPingAfterDataWaitsForCompany(t *testing.T) {
	ctx := testContext(t)
	c, frames := refusingEngineClient(ctx, t, Config{pingAckPatience: time.Hour})
	if err := c.headers(1, true, grpcRequestHeaders("/test.Echo/Unary")...); err != nil {
		t.Fatal(err)
	}
	nextFrame(ctx, t, frames, "the first call's status", isType(http2.FrameHeaders))
	if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{'d'}) }); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-frames:
		t.Fatalf("got %v %v within %s of the PING, want nothing before the next call", f.Type, f.Flags, 20*pingAckDelay)
	case <-time.After(20 * pingAckDelay):
	}
	if err := c.headers(3, true, grpcRequestHeaders("/test.Echo/Unary")...); err != nil {
		t.Fatal(err)
	}
	first := nextFrame(ctx, t, frames, "PING answer or the call's status", isPingAnswerOrHeaders)
	if first.Type != http2.FrameHeaders {
		t.Fatalf("first frame %v, want the second call's status ahead of the PING answer", first.Type)
	}
	nextFrame(ctx, t, frames, "PING answer", isPingAnswer)
}

// TestPingAfterDataAnsweredInTime: with nothing else for its peer, the
// answer to a PING after data goes out once pingAckPatience is over, and
// a keepalive probe that comes meanwhile is answered without waiting
// for it.
func TestPingAfterDataAnsweredInTime(t *testing.T) {
	ctx := testContext(t)
	const patience = 400 * time.Millisecond
	c, frames := refusingEngineClient(ctx, t, Config{pingAckPatience: patience})
	if err := c.headers(1, true, grpcRequestHeaders("/test.Echo/Unary")...); err != nil {
		t.Fatal(err)
	}
	nextFrame(ctx, t, frames, "the call's status", isType(http2.FrameHeaders))
	sent := time.Now()
	if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{'d'}) }); err != nil {
		t.Fatal(err)
	}
	f := nextFrame(ctx, t, frames, "answer to the PING after data", isPingAnswer)
	waited := time.Since(sent)
	if waited < patience || waited > patience+ackSlack(patience)+time.Second {
		t.Errorf("PING after data answered after %s, want %s and a little", waited, patience)
	}
	if f.Type != http2.FramePing {
		t.Fatalf("got %v", f.Type)
	}

	// Nothing was sent since that PING: the next is a probe.
	sent = time.Now()
	if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{'k'}) }); err != nil {
		t.Fatal(err)
	}
	nextFrame(ctx, t, frames, "answer to the probe", isPingAnswer)
	if waited := time.Since(sent); waited >= patience {
		t.Errorf("probe answered after %s, want about %s", waited, pingAckDelay)
	}
}

// TestPingAnswerGoesWithFrames: the answer to a PING goes out with the
// next frames to its peer, here a call's status, after them, without
// waiting. The
// engine's delay is an hour, so an answer that comes came with them.
func TestPingAnswerGoesWithFrames(t *testing.T) {
	ctx := testContext(t)
	c, frames := refusingEngineClient(ctx, t, Config{pingAckDelay: time.Hour})
	if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{'q'}) }); err != nil {
		t.Fatal(err)
	}
	if err := c.headers(1, true, grpcRequestHeaders("/test.Echo/Unary")...); err != nil {
		t.Fatal(err)
	}
	first := nextFrame(ctx, t, frames, "PING answer or the call's status", isPingAnswerOrHeaders)
	if first.Type != http2.FrameHeaders {
		t.Fatalf("first frame %v, want the status ahead of the PING answer", first.Type)
	}
	if got := fieldValue(first.Headers, "grpc-status"); got != "14" {
		t.Errorf("grpc-status %q, want 14", got)
	}
	nextFrame(ctx, t, frames, "PING answer", isPingAnswer)
}

// TestPingAnswerKeepsItsOwnWait: an answer that went out with other
// frames before its wait was over does not cut short the wait of the
// next answer to the same peer: that one too waits its whole
// pingAckPatience.
func TestPingAnswerKeepsItsOwnWait(t *testing.T) {
	ctx := testContext(t)
	const patience = 400 * time.Millisecond
	c, frames := refusingEngineClient(ctx, t, Config{pingAckPatience: patience})
	isStatus := isType(http2.FrameHeaders)
	call := func(id uint32) {
		t.Helper()
		if err := c.headers(id, true, grpcRequestHeaders("/test.Echo/Unary")...); err != nil {
			t.Fatal(err)
		}
	}
	ping := func(b byte) {
		t.Helper()
		if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{b}) }); err != nil {
			t.Fatal(err)
		}
	}

	call(1)
	nextFrame(ctx, t, frames, "the first call's status", isStatus)
	ping('a') // waits up to patience from now
	time.Sleep(patience / 2)
	call(3) // its status takes the first answer along
	nextFrame(ctx, t, frames, "the second call's status", isStatus)
	nextFrame(ctx, t, frames, "the first answer", isPingAnswer)
	sent := time.Now()
	ping('b') // after data again: its own wait, past the first's
	nextFrame(ctx, t, frames, "the second answer", isPingAnswer)
	if waited := time.Since(sent); waited < patience {
		t.Errorf("second answer after %s, want at least %s: the first answer's wait cut it short", waited, patience)
	}
}

// TestBackendPingsEveryOtherCall: a grpc-go backend pings (its bandwidth
// estimate) when a request's DATA arrives and no PING of its is
// unanswered. The engine's answer goes with the next call's frames,
// after its DATA, so the backend counts that DATA in the sample it has
// open and does not ping for it: one call at a time, it pings for every
// other call, not for each.
func TestBackendPingsEveryOtherCall(t *testing.T) {
	ctx := testContext(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The PINGs are counted as the backend writes them, so that the
	// engine keeps its own sockets (and their raw reads and writes).
	var pings atomic.Int64
	srv := grpc.NewServer(grpc.UnknownServiceHandler(testHandler), grpc.ForceServerCodec(rawCodec{}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(pingCountingListener{Listener: lis, pings: &pings})
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	e := startEngine(t, Config{}, lis.Addr().String())
	cc := dial(t, e.addr)
	const calls = 40
	for i := range calls {
		if _, err := unary(ctx, cc, methodUnary, []byte{byte(i)}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	got := pings.Load()
	t.Logf("backend sent %d PINGs over %d calls", got, calls)
	if got == 0 || got > calls/2+2 {
		t.Errorf("backend sent %d PINGs over %d calls one at a time, want about %d", got, calls, calls/2)
	}
}

// pingCountingListener hands out connections that count the PINGs (not
// answers) the server writes on them.
type pingCountingListener struct {
	net.Listener
	pings *atomic.Int64
}

func (l pingCountingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &pingCounter{Conn: nc, pings: l.pings}, nil
}

// pingCounter counts the PINGs (not answers) in what it writes, a stream
// of HTTP/2 frames: a server writes no preface but its SETTINGS frame.
type pingCounter struct {
	net.Conn
	pings *atomic.Int64
	head  []byte // a frame header written in part
	skip  int    // payload bytes of the current frame still to come
}

func (p *pingCounter) Write(b []byte) (int, error) {
	for rest := b; len(rest) > 0; {
		if p.skip > 0 {
			k := min(p.skip, len(rest))
			p.skip -= k
			rest = rest[k:]
			continue
		}
		k := min(frameHeaderLen-len(p.head), len(rest))
		p.head = append(p.head, rest[:k]...)
		rest = rest[k:]
		if len(p.head) < frameHeaderLen {
			break
		}
		h := p.head
		if http2.FrameType(h[3]) == http2.FramePing && http2.Flags(h[4])&http2.FlagPingAck == 0 {
			p.pings.Add(1)
		}
		p.skip = int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		p.head = p.head[:0]
	}
	return p.Conn.Write(b)
}

// refusingEngineClient starts an engine of cfg whose router turns every
// call down with UNAVAILABLE, and a raw client of it that answers PINGs
// and has read the engine's SETTINGS.
func refusingEngineClient(ctx context.Context, t *testing.T, cfg Config) (*rawClient, <-chan rawFrame) {
	t.Helper()
	cfg.Router = routerFunc(func(*Request) (Route, error) { return Route{}, status.Error(codes.Unavailable, "no backend") })
	e := startEngine(t, cfg, "")
	c, frames := dialRawClient(t, e.addr, true)
	nextFrame(ctx, t, frames, "SETTINGS", isType(http2.FrameSettings))
	return c, frames
}

func isPingAnswer(f rawFrame) bool { return f.Type == http2.FramePing && !f.Ping }

func isPingAnswerOrHeaders(f rawFrame) bool { return isPingAnswer(f) || f.Type == http2.FrameHeaders }
