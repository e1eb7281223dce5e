package frames

import (
	"context"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// TestBackendGoAwayConnectionClosed: a backend answers each call, then
// sends GOAWAY (NO_ERROR, the call's stream processed) and leaves the
// closing of the connection to the engine. Once the connection's streams
// have ended, the engine must close it.
func TestBackendGoAwayConnectionClosed(t *testing.T) {
	ctx := testContext(t)
	b := startRawServer(t, onRequestEnd(func(p *rawPeer, id uint32) {
		p.answer(id, grpcMessage([]byte("ok")))
		// Going away, but leaving the closing to the client.
		_ = p.write(func(w *http2.Framer) error { return w.WriteGoAway(id, http2.ErrCodeNo, nil) })
	}))
	e := startEngine(t, Config{}, b.addr)
	cc := dial(t, e.addr)
	for i := range 3 {
		if resp, err := unary(ctx, cc, methodUnary, []byte("x")); err != nil || string(resp) != "ok" {
			t.Fatalf("call %d: %q, %v", i, resp, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	testwait.For(wctx, t, "the engine to close the connections the backend sent away", func() bool { return b.connected.Load() == 0 })
}
