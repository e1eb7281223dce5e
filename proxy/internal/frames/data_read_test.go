package frames

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/net/http2"
)

// TestDataFramesEveryShape sends a client-stream call's requests as DATA
// frames the engine reads in its different ways: plain ones from its read
// buffer, padded ones and ones larger than a client connection's read
// buffer through the Framer. The backend counts every byte.
func TestDataFramesEveryShape(t *testing.T) {
	ctx := testContext(t)
	e := startEchoEngine(t, Config{})
	c, frames := openClientStream(t, e)
	var stream []byte
	for _, size := range []int{10, 1000, 16000} {
		stream = append(stream, grpcMessage(bytes.Repeat([]byte{'x'}, size))...)
	}
	// Cut the messages into frames of every kind, whatever their
	// boundaries: plain, padded, plain of the largest size.
	shapes := []struct {
		n   int
		pad []byte
	}{{7, nil}, {500, make([]byte, 20)}, {maxFrameSize, nil}, {300, make([]byte, 255)}, {1 << 20, nil}}
	for i := 0; len(stream) > 0; i++ {
		s := shapes[i%len(shapes)]
		n := min(s.n, len(stream), maxFrameSize-len(s.pad)-1)
		chunk, end := stream[:n], n == len(stream)
		stream = stream[n:]
		err := c.write(func(w *http2.Framer) error {
			if s.pad != nil {
				return w.WriteDataPadded(1, end, chunk, s.pad)
			}
			return w.WriteData(1, end, chunk)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := clientStreamCount(ctx, t, frames); got != 10+1000+16000 {
		t.Fatalf("the backend counted %d bytes, want %d", got, 10+1000+16000)
	}
}

// openClientStream opens a methodClientStream call, stream 1, on a raw
// client connection to e, which keeps the DATA it receives.
func openClientStream(t *testing.T, e *testEngine) (*rawClient, <-chan rawFrame) {
	t.Helper()
	c, frames := dialRawClient(t, e.addr, true)
	c.keepData.Store(true)
	if err := c.headers(1, false, grpcRequestHeaders(methodClientStream)...); err != nil {
		t.Fatal(err)
	}
	return c, frames
}

// clientStreamCount reads the answer to openClientStream's call: the
// number of bytes the backend counted, with grpc-status 0.
func clientStreamCount(ctx context.Context, t *testing.T, frames <-chan rawFrame) uint64 {
	t.Helper()
	var resp []byte
	for {
		f := nextFrame(ctx, t, frames, "the response", func(f rawFrame) bool { return f.StreamID == 1 })
		if f.Type == http2.FrameData {
			resp = append(resp, f.Payload...)
			continue
		}
		if f.Type == http2.FrameHeaders && f.Flags.Has(http2.FlagHeadersEndStream) {
			if fieldValue(f.Headers, "grpc-status") != "0" {
				t.Fatalf("status %v", f.Headers)
			}
			break
		}
	}
	msgs := readMessages(t, resp)
	if len(msgs) != 1 || len(msgs[0]) != 8 {
		t.Fatalf("response %x, want one 8-byte count", resp)
	}
	return binary.BigEndian.Uint64(msgs[0])
}

// TestDataInsideHeaderBlock: DATA between a HEADERS frame without
// END_HEADERS and its CONTINUATION is a connection error.
func TestDataInsideHeaderBlock(t *testing.T) {
	ctx := testContext(t)
	e := startEchoEngine(t, Config{})
	c, frames := dialRawClient(t, e.addr, true)
	c.hbuf.Reset()
	for _, f := range grpcRequestHeaders(methodUnary) {
		_ = c.enc.WriteField(f)
	}
	if err := c.write(func(w *http2.Framer) error {
		if err := w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.hbuf.Bytes()}); err != nil {
			return err
		}
		return w.WriteData(1, true, grpcMessage([]byte("x")))
	}); err != nil {
		t.Fatal(err)
	}
	seen := waitClosed(ctx, t, frames)
	for _, f := range seen {
		if f.Type == http2.FrameGoAway {
			if f.Code != http2.ErrCodeProtocol {
				t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", f.Code)
			}
			return
		}
	}
	t.Fatalf("the connection closed without a GOAWAY: %v", seen)
}

// TestHeadersFramesEveryShape sends calls whose request headers come in
// the HEADERS frames the engine reads in its different ways: a whole
// block from its read buffer; padded, with priority, or continued in
// CONTINUATION frames through the Framer. Every call is answered.
func TestHeadersFramesEveryShape(t *testing.T) {
	ctx := testContext(t)
	e := startEchoEngine(t, Config{})
	c, frames := dialRawClient(t, e.addr, true)
	shapes := []struct {
		name  string
		param http2.HeadersFrameParam
		split bool
	}{
		{name: "plain"},
		{name: "padded", param: http2.HeadersFrameParam{PadLength: 17}},
		{name: "priority", param: http2.HeadersFrameParam{Priority: http2.PriorityParam{StreamDep: 0, Weight: 200}}},
		{name: "continued", split: true},
	}
	for i, shape := range shapes {
		id := uint32(2*i + 1)
		c.hbuf.Reset()
		for _, f := range grpcRequestHeaders(methodUnary) {
			_ = c.enc.WriteField(f)
		}
		block := c.hbuf.Bytes()
		err := c.write(func(w *http2.Framer) error {
			p := shape.param
			p.StreamID, p.BlockFragment, p.EndHeaders = id, block, true
			if shape.split {
				p.BlockFragment, p.EndHeaders = block[:3], false
			}
			if err := w.WriteHeaders(p); err != nil {
				return err
			}
			if shape.split {
				if err := w.WriteContinuation(id, true, block[3:]); err != nil {
					return err
				}
			}
			return w.WriteData(id, true, grpcMessage([]byte(shape.name)))
		})
		if err != nil {
			t.Fatal(err)
		}
		f := nextFrame(ctx, t, frames, shape.name+" call's end", func(f rawFrame) bool {
			return f.StreamID == id && (f.Type == http2.FrameRSTStream || f.Flags.Has(http2.FlagHeadersEndStream))
		})
		if f.Type != http2.FrameHeaders || fieldValue(f.Headers, "grpc-status") != "0" {
			t.Errorf("%s: %v %v %v, want grpc-status 0", shape.name, f.Type, f.Code, f.Headers)
		}
	}
}

// TestReadBufferGrows: connections that carry small calls keep their
// small read buffer; a stream's grows the backend connection's to the
// largest, and then the client connection's as it uploads, and the bytes
// arrive whole; once small calls follow, both go back to the small
// buffer.
func TestReadBufferGrows(t *testing.T) {
	ctx := testContext(t)
	e := startEchoEngine(t, Config{})
	cc := dial(t, e.addr)
	read := func() bufferSizes { return readBuffers(e) }
	smallCalls := func() {
		for range smallReadsToShrink + 4 {
			if _, err := unary(ctx, cc, methodUnary, patterned(1, 100)); err != nil {
				t.Fatal(err)
			}
		}
	}
	smallCalls()
	if s := read(); s.clientPeak != initialReadBuf || s.backendPeak != initialReadBuf {
		t.Fatalf("after small calls: read buffers %+v, want %d throughout", s, initialReadBuf)
	}
	serverStreamWhole(ctx, t, cc, 16, 256<<10)
	if s := read(); s.backendPeak != maxReadBuf || s.clientPeak != initialReadBuf {
		t.Errorf("after a download: read buffers %+v, want the backend's to have reached %d, the client's %d", s, maxReadBuf, initialReadBuf)
	}
	smallCalls()
	if s := read(); s.backend != initialReadBuf {
		t.Errorf("small calls after a download: backend read buffer %d, want %d", s.backend, initialReadBuf)
	}
	if resp, err := unary(ctx, cc, methodUnary, patterned(2, 4<<20)); err != nil || !bytes.Equal(resp, patterned(2, 4<<20)) {
		t.Fatalf("4 MiB upload: %d bytes back, %v", len(resp), err)
	}
	if s := read(); s.clientPeak < bulkReadBuf {
		t.Errorf("after an upload: client read buffer reached %d, want at least %d", s.clientPeak, bulkReadBuf)
	}
	smallCalls()
	if s := read(); s.client != initialReadBuf || s.backend != initialReadBuf {
		t.Errorf("after small calls again: read buffers %+v, want %d", s, initialReadBuf)
	}
}

// TestConcurrentStreamsIntact runs server streams of large messages side
// by side over one client connection and one backend connection, with
// unary calls between them: DATA of several streams shares each read
// and write (and, on Linux, goes from the backend connection's read
// buffer to the client's socket uncopied while the client's own frames,
// window updates and pings, are answered on the same connection); every
// byte arrives in place.
func TestConcurrentStreamsIntact(t *testing.T) {
	ctx := testContext(t)
	e := startEchoEngine(t, Config{})
	cc := dial(t, e.addr)
	const streams = 4
	errs := make(chan error, streams+1)
	for range streams {
		go func() { errs <- serverStreamCheck(ctx, cc, 24, 1<<20) }()
	}
	go func() {
		for i := range 200 {
			req := patterned(uint32(i), 100)
			if resp, err := unary(ctx, cc, methodUnary, req); err != nil || !bytes.Equal(resp, req) {
				errs <- fmt.Errorf("unary call %d between the streams: %d bytes back, %v", i, len(resp), err)
				return
			}
		}
		errs <- nil
	}()
	for range streams + 1 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
