package frames

import (
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// TestMessageSizeLimit: a request or response message over MaxMessageSize
// ends the call with RESOURCE_EXHAUSTED, and the backend's stream is
// reset; messages at the limit pass.
func TestMessageSizeLimit(t *testing.T) {
	ctx := testContext(t)
	ended := make(chan error, 4)
	b := startBackend(t, func(srv any, ss grpc.ServerStream) error {
		err := testHandler(srv, ss)
		if err != nil {
			ended <- err
		}
		return err
	})
	const limit = 64 << 10
	e := startEngine(t, Config{MaxMessageSize: limit}, b.addr)
	cc := dial(t, e.addr)

	if _, err := unary(ctx, cc, methodUnary, make([]byte, limit)); err != nil {
		t.Fatalf("a message at the limit: %v", err)
	}
	_, err := unary(ctx, cc, methodUnary, make([]byte, limit+1))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "request message larger than max") {
		t.Errorf("request over the limit: %v, want RESOURCE_EXHAUSTED", st)
	}
	// A response over the limit: the backend streams it after a small
	// request.
	s, err := cc.NewStream(ctx, streamDesc, methodServerStream)
	if err != nil {
		t.Fatal(err)
	}
	req := serverStreamRequest(2, limit+1)
	if err := s.SendMsg(&req); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseSend()
	var msg []byte
	err = s.RecvMsg(&msg)
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "response message from the backend larger") {
		t.Errorf("response over the limit: %v, want RESOURCE_EXHAUSTED", st)
	}
	select {
	case err := <-ended:
		if status.Code(err) != codes.Canceled {
			t.Errorf("the backend's streaming call ended with %v, want Canceled (reset)", err)
		}
	case <-ctx.Done():
		t.Fatal("the backend's streaming call never ended")
	}
	testwait.For(ctx, t, "no call in flight", func() bool { return e.InFlight() == 0 })
}

// TestMaxConcurrentStreams: the engine advertises the limit, and refuses
// (REFUSED_STREAM) a stream over it from a client that ignores it.
func TestMaxConcurrentStreams(t *testing.T) {
	ctx := testContext(t)
	b := startBackend(t, nil)
	e := startEngine(t, Config{MaxConcurrentStreams: 2}, b.addr)
	c, frames := dialRawClient(t, e.addr, true)
	nextFrame(ctx, t, frames, "SETTINGS", func(f rawFrame) bool {
		return f.Type == http2.FrameSettings && !f.Flags.Has(http2.FlagSettingsAck)
	})
	for _, id := range []uint32{1, 3, 5} {
		if err := c.headers(id, false, grpcRequestHeaders(methodBidi)...); err != nil {
			t.Fatal(err)
		}
	}
	f := nextFrame(ctx, t, frames, "RST_STREAM", func(f rawFrame) bool { return f.Type == http2.FrameRSTStream })
	if f.StreamID != 5 || f.Code != http2.ErrCodeRefusedStream {
		t.Errorf("RST_STREAM %v on stream %d, want REFUSED_STREAM on stream 5", f.Code, f.StreamID)
	}
	// Once a stream ends, a new one is taken.
	if err := c.write(func(w *http2.Framer) error { return w.WriteData(1, true, grpcMessage([]byte("a"))) }); err != nil {
		t.Fatal(err)
	}
	nextFrame(ctx, t, frames, "stream 1's trailers", func(f rawFrame) bool {
		return f.StreamID == 1 && f.Type == http2.FrameHeaders && f.Flags.Has(http2.FlagHeadersEndStream)
	})
	if err := c.headers(7, false, grpcRequestHeaders(methodBidi)...); err != nil {
		t.Fatal(err)
	}
	if err := c.write(func(w *http2.Framer) error { return w.WriteData(7, true, grpcMessage([]byte("b"))) }); err != nil {
		t.Fatal(err)
	}
	f = nextFrame(ctx, t, frames, "stream 7's end", func(f rawFrame) bool {
		return f.StreamID == 7 && (f.Type == http2.FrameRSTStream || f.Type == http2.FrameHeaders && f.Flags.Has(http2.FlagHeadersEndStream))
	})
	if f.Type != http2.FrameHeaders || fieldValue(f.Headers, "grpc-status") != "0" {
		t.Errorf("stream 7 ended with %v %v, want grpc-status 0", f.Type, f.Headers)
	}
}

// TestNotGRPCRefused: a request that is not a gRPC call (method, content
// type) is answered UNIMPLEMENTED without reaching a backend.
func TestNotGRPCRefused(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{Router: routerFunc(func(*Request) (Route, error) {
		t.Error("a request that is not gRPC was routed")
		return Route{}, status.Error(codes.Internal, "routed")
	})}, "")
	c, frames := dialRawClient(t, e.addr, true)
	get := grpcRequestHeaders(methodUnary)
	get[0].Value = "GET"
	json := grpcRequestHeaders(methodUnary)
	json[4].Value = "application/json"
	// Header blocks with almost nothing in them (one crashed the engine,
	// found by FuzzClientFrames).
	bare := []hpack.HeaderField{{Name: ":method", Value: "POST"}}
	empty := []hpack.HeaderField{}
	for i, h := range [][]hpack.HeaderField{get, json, bare, empty} {
		id := uint32(2*i + 1)
		if err := c.headers(id, true, h...); err != nil {
			t.Fatal(err)
		}
		f := nextFrame(ctx, t, frames, "the answer", func(f rawFrame) bool { return f.StreamID == id })
		if f.Type != http2.FrameHeaders || fieldValue(f.Headers, "grpc-status") != "12" || fieldValue(f.Headers, ":status") != "200" {
			t.Errorf("stream %d: %v %v, want trailers-only UNIMPLEMENTED", id, f.Type, f.Headers)
		}
	}
}
