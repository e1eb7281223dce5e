package frames

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestBackendCancelAfterDeadline: a grpc-go backend resets a stream with
// CANCEL when the grpc-timeout it was given passes. A client talking to it
// directly maps that reset, its own deadline being over, to
// DEADLINE_EXCEEDED (grpc-go http2_client.go handleRSTStream). Through the
// engine, the client must be able to do the same: it must get the reset
// (RST_STREAM CANCEL), or DEADLINE_EXCEEDED trailers, not CANCELLED
// trailers.
func TestBackendCancelAfterDeadline(t *testing.T) {
	ctx := testContext(t)
	b := startRawServer(t, func(p *rawPeer, f http2.Frame) {
		hf, ok := f.(*http2.MetaHeadersFrame)
		if !ok {
			return
		}
		timeout, _ := strconv.Atoi(strings.TrimSuffix(fieldValue(hf.Fields, "grpc-timeout"), "m"))
		id := hf.StreamID
		time.AfterFunc(time.Duration(timeout)*time.Millisecond, func() {
			_ = p.write(func(w *http2.Framer) error { return w.WriteRSTStream(id, http2.ErrCodeCancel) })
		})
	})
	e := startEngine(t, Config{}, b.addr)
	c, frames := dialRawClient(t, e.addr, true)
	h := append(grpcRequestHeaders(methodUnary), hpack.HeaderField{Name: "grpc-timeout", Value: "50m"})
	if err := c.headers(1, false, h...); err != nil {
		t.Fatal(err)
	}
	f := nextFrame(ctx, t, frames, "the stream's end", func(f rawFrame) bool { return f.StreamID == 1 })
	switch {
	case f.Type == http2.FrameRSTStream && f.Code == http2.ErrCodeCancel:
	case f.Type == http2.FrameHeaders && fieldValue(f.Headers, "grpc-status") == "4":
	default:
		t.Fatalf("the client got %v %v %v, want RST_STREAM CANCEL or DEADLINE_EXCEEDED", f.Type, f.Code, f.Headers)
	}
}
