package frames

import (
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestBackendRefusedStreamAttemptLimit: a backend refusing every stream
// (REFUSED_STREAM, so the call is retried transparently) sees at most
// maxAttempts attempts of one call, as call.go documents ("the attempts of
// one call, retries that never reached a backend included").
func TestBackendRefusedStreamAttemptLimit(t *testing.T) {
	ctx := testContext(t)
	var attempts atomic.Int64
	b := startRawServer(t, func(p *rawPeer, f http2.Frame) {
		if hf, ok := f.(*http2.MetaHeadersFrame); ok {
			attempts.Add(1)
			_ = p.write(func(w *http2.Framer) error { return w.WriteRSTStream(hf.StreamID, http2.ErrCodeRefusedStream) })
		}
	})
	e := startEngine(t, Config{}, b.addr)
	_, err := unary(ctx, dial(t, e.addr), methodUnary, []byte("x"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("call ended with %v, want UNAVAILABLE", err)
	}
	if n := attempts.Load(); n != maxAttempts {
		t.Errorf("the backend saw %d attempts of the call, want maxAttempts (%d)", n, maxAttempts)
	}
}
