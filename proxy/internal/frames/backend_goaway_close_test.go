package frames

import (
	"context"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestBackendGoAwayConnectionClosed: a backend answers each call, then
// sends GOAWAY (NO_ERROR, the call's stream processed) and leaves the
// closing of the connection to the engine. Once the connection's streams
// have ended, the engine must close it.
func TestBackendGoAwayConnectionClosed(t *testing.T) {
	ctx := testContext(t)
	b := startRawServer(t, func(p *rawPeer, f http2.Frame) {
		df, ok := f.(*http2.DataFrame)
		if !ok || !df.StreamEnded() {
			return
		}
		id := df.StreamID
		_ = p.headers(id, false, hpack.HeaderField{Name: ":status", Value: "200"}, hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
		_ = p.write(func(w *http2.Framer) error { return w.WriteData(id, false, grpcMessage([]byte("ok"))) })
		_ = p.headers(id, true, hpack.HeaderField{Name: "grpc-status", Value: "0"})
		// Going away, but leaving the closing to the client.
		_ = p.write(func(w *http2.Framer) error { return w.WriteGoAway(id, http2.ErrCodeNo, nil) })
	})
	e := startEngine(t, Config{}, b.addr)
	cc := dial(t, e.addr)
	for i := range 3 {
		if resp, err := unary(ctx, cc, methodUnary, []byte("x")); err != nil || string(resp) != "ok" {
			t.Fatalf("call %d: %q, %v", i, resp, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	waitFor(wctx, t, "the engine to close the connections the backend sent away", func() bool { return b.connected.Load() == 0 })
}
