package frames

import (
	"bytes"
	"slices"
	"testing"

	"golang.org/x/net/http2"
)

// TestRetryMidMessage: a client sends the first part of a message; the
// first backend refuses the stream (REFUSED_STREAM: a transparent retry to
// the second backend); then the client sends the rest of the message. The
// second backend must get the message whole and the call succeed.
func TestRetryMidMessage(t *testing.T) {
	ctx := testContext(t)
	// The first backend refuses the stream once the first part of the
	// message reached it (the engine has scanned it then).
	refusing := startRawServer(t, func(p *rawPeer, f http2.Frame) {
		if df, ok := f.(*http2.DataFrame); ok {
			_ = p.write(func(w *http2.Framer) error { return w.WriteRSTStream(df.StreamID, http2.ErrCodeRefusedStream) })
		}
	})
	echo := startBackend(t, nil)
	var late lateRouter
	e := startEngine(t, Config{Router: &late}, "")
	first, second := dialBackend(e.Engine, refusing.addr), dialBackend(e.Engine, echo.addr)
	retried := make(chan struct{})
	late.set(routerFunc(func(r *Request) (Route, error) {
		if !slices.Contains(r.Tried, first) {
			return Route{Backend: first, Done: func(Result) { close(retried) }}, nil
		}
		return Route{Backend: second}, nil
	}))

	payload := bytes.Repeat([]byte{0xff}, 1000)
	msg := grpcMessage(payload)
	c, frames := dialRawClient(t, e.addr, true)
	c.keepData.Store(true)
	if err := c.headers(1, false, grpcRequestHeaders(methodUnary)...); err != nil {
		t.Fatal(err)
	}
	if err := c.write(func(w *http2.Framer) error { return w.WriteData(1, false, msg[:505]) }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-retried:
	case <-ctx.Done():
		t.Fatal("the first backend's attempt never ended")
	}
	if err := c.write(func(w *http2.Framer) error { return w.WriteData(1, true, msg[505:]) }); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		f := nextFrame(ctx, t, frames, "the response", func(f rawFrame) bool { return f.StreamID == 1 })
		got = append(got, f.Payload...)
		if f.Type == http2.FrameRSTStream {
			t.Fatalf("stream reset: %v", f.Code)
		}
		if f.Type == http2.FrameHeaders && f.Flags.Has(http2.FlagHeadersEndStream) {
			if st := fieldValue(f.Headers, "grpc-status"); st != "0" {
				t.Fatalf("grpc-status %s: %s", st, fieldValue(f.Headers, "grpc-message"))
			}
			break
		}
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("response of %d bytes, want the %d-byte message echoed", len(got), len(msg))
	}
}
