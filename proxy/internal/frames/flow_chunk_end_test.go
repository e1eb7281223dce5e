package frames

import (
	"testing"

	"golang.org/x/net/http2"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// TestFlowEndAfterWholeChunk has a response wait for the client's window
// as exactly one full chunk, its trailers behind it; the window update
// sends both and ends the call, and the engine goes on serving.
func TestFlowEndAfterWholeChunk(t *testing.T) {
	ctx := testContext(t)
	b := startRawServer(t, onRequestEnd(func(p *rawPeer, id uint32) {
		// Two frames fill one chunk of the engine's queue exactly.
		body := make([]byte, chunkSize)
		p.answer(id, body[:chunkSize/2], body[chunkSize/2:])
	}))
	e := startEngine(t, Config{}, b.addr)
	c, frames := dialRawClient(t, e.addr, true, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	if err := c.write(func(w *http2.Framer) error { return w.WriteWindowUpdate(0, 1<<20) }); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint32{1, 3} {
		if err := c.headers(id, false, grpcRequestHeaders(methodUnary)...); err != nil {
			t.Fatal(err)
		}
		if err := c.write(func(w *http2.Framer) error { return w.WriteData(id, true, grpcMessage([]byte("x"))) }); err != nil {
			t.Fatal(err)
		}
		nextFrame(ctx, t, frames, "response headers", func(f rawFrame) bool { return f.StreamID == id && f.Type == http2.FrameHeaders })
		// The response and its trailers wait, whole, for this.
		testwait.For(ctx, t, "the response to be queued", func() bool {
			c := clientCall(e.Engine, id)
			if c == nil {
				return false
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.down.q.len() == chunkSize && c.down.trailers != nil
		})
		if err := c.write(func(w *http2.Framer) error { return w.WriteWindowUpdate(id, chunkSize) }); err != nil {
			t.Fatal(err)
		}
		got := 0
		for {
			f := nextFrame(ctx, t, frames, "the response", func(f rawFrame) bool { return f.StreamID == id })
			if f.Type == http2.FrameData {
				got += f.Data
				continue
			}
			if f.Type != http2.FrameHeaders || fieldValue(f.Headers, "grpc-status") != "0" || got != chunkSize {
				t.Fatalf("call %d: %v %v after %d bytes, want trailers with grpc-status 0 after %d", id, f.Type, f.Headers, got, chunkSize)
			}
			break
		}
	}
}

// clientCall is the call on client stream id of the engine's only client
// connection, or nil.
func clientCall(e *Engine, id uint32) *call {
	e.mu.Lock()
	defer e.mu.Unlock()
	for c := range e.conns {
		if c.backend == nil {
			return c.lookup(id)
		}
	}
	return nil
}
