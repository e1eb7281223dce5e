package frames

import (
	"testing"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
)

// TestFlowClientIgnoresWindow: a client that ignores the stream window the
// engine advertised sends 32 MiB to a backend that reads
// nothing. The engine must not hold it all: it resets the stream or the
// connection (FLOW_CONTROL_ERROR), or at least its heap stays bounded.
func TestFlowClientIgnoresWindow(t *testing.T) {
	ctx := testContext(t)
	b := startBackend(t, func(srv any, ss grpc.ServerStream) error {
		if method, _ := grpc.MethodFromServerStream(ss); method != methodBidi {
			return testHandler(srv, ss)
		}
		<-ss.Context().Done()
		return nil
	})
	e := startEngine(t, Config{}, b.addr)
	cc := dial(t, e.addr)
	if _, err := unary(ctx, cc, methodUnary, []byte("warm up")); err != nil {
		t.Fatal(err)
	}
	before := heapInuse()
	c, frames := dialRawClient(t, e.addr, true)
	if err := c.headers(1, false, grpcRequestHeaders(methodBidi)...); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 16384)
	sent := 0
	for sent < 32<<20 {
		if err := c.write(func(w *http2.Framer) error { return w.WriteData(1, false, chunk) }); err != nil {
			break // reset connection
		}
		sent += len(chunk)
	}
	// PING round trip: everything sent before it has been read.
	if err := c.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{1}) }); err == nil {
		nextFrame(ctx, t, frames, "PING ack or GOAWAY", func(f rawFrame) bool {
			return f.Type == http2.FramePing || f.Type == http2.FrameGoAway
		})
	}
	growth := int64(heapInuse()) - int64(before)
	var reset bool
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				reset = true
				break
			}
			if f.Type == http2.FrameRSTStream && f.StreamID == 1 || f.Type == http2.FrameGoAway {
				t.Logf("engine sent %v %v", f.Type, f.Code)
				reset = true
			}
			continue
		default:
		}
		break
	}
	t.Logf("client sent %d MiB beyond its window; reset %v; heap grew %d MiB", sent>>20, reset, growth>>20)
	if !reset && growth > 8<<20 {
		t.Errorf("the engine holds %d MiB for a client that ignored its window, and did not reset it", growth>>20)
	}
}
