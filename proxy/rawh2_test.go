package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawH2 is a hand-driven HTTP/2 client connection, to play clients that
// break the protocol: it writes whatever frames (or bytes) a test asks for
// and never answers the server's SETTINGS or PINGs by itself.
type rawH2 struct {
	t      *testing.T
	conn   net.Conn
	w      *http2.Framer
	frames chan rawFrame // closed when the server closed the connection
	done   chan struct{} // closed when the reader has ended
	// closed is when the reader saw the connection end.
	closed time.Time
}

// rawFrame is what the tests look at in a frame the server sent.
type rawFrame struct {
	Type     http2.FrameType
	StreamID uint32
	Flags    http2.Flags
	Code     http2.ErrCode     // RST_STREAM, GOAWAY
	Debug    string            // GOAWAY
	Headers  map[string]string // HEADERS (with CONTINUATIONs)
}

// dialRaw connects to addr and reads the server's frames until it closes
// the connection; the connection is closed when the test ends.
func dialRaw(t *testing.T, addr string) *rawH2 {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawH2{t: t, conn: conn, w: http2.NewFramer(conn, nil),
		frames: make(chan rawFrame, 1024), done: make(chan struct{})}
	r.w.AllowIllegalWrites = true
	go r.read()
	t.Cleanup(func() {
		_ = conn.Close()
		<-r.done
	})
	return r
}

func (r *rawH2) read() {
	defer close(r.done)
	defer close(r.frames)
	fr := http2.NewFramer(nil, r.conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				continue
			}
			r.closed = time.Now()
			return
		}
		out := rawFrame{Type: f.Header().Type, StreamID: f.Header().StreamID, Flags: f.Header().Flags}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			out.Code, out.Debug = f.ErrCode, string(f.DebugData())
		case *http2.RSTStreamFrame:
			out.Code = f.ErrCode
		case *http2.MetaHeadersFrame:
			out.Headers = map[string]string{}
			for _, hf := range f.Fields {
				out.Headers[hf.Name] = hf.Value
			}
		}
		select {
		case r.frames <- out:
		default: // nobody looks at this many frames
		}
	}
}

// write writes raw bytes, failing the test on error.
func (r *rawH2) write(b []byte) {
	r.t.Helper()
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

// preface sends the client preface and an empty SETTINGS frame.
func (r *rawH2) preface() {
	r.t.Helper()
	r.write([]byte(http2.ClientPreface))
	if err := r.w.WriteSettings(); err != nil {
		r.t.Fatal(err)
	}
}

// requestHeaders encodes the headers of a gRPC call to method, plus extra
// fields.
func requestHeaders(method string, extra ...hpack.HeaderField) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.SetMaxDynamicTableSizeLimit(0)
	for _, hf := range append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: method}, {Name: ":authority", Value: "quaestor"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, extra...) {
		_ = enc.WriteField(hf)
	}
	return buf.Bytes()
}

// request opens stream id with a gRPC call to method.
func (r *rawH2) request(id uint32, method string, extra ...hpack.HeaderField) {
	r.t.Helper()
	if err := r.w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: requestHeaders(method, extra...), EndHeaders: true}); err != nil {
		r.t.Fatal(err)
	}
}

// message sends one gRPC message on stream id: the 5-byte prefix states
// length (which may lie) and flags, then payload.
func (r *rawH2) message(id uint32, compressed byte, length uint32, payload []byte, endStream bool) {
	r.t.Helper()
	data := append([]byte{compressed, byte(length >> 24), byte(length >> 16), byte(length >> 8), byte(length)}, payload...)
	if err := r.w.WriteData(id, endStream, data); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next frame that match accepts; ok is false when the
// server closed the connection first.
func (r *rawH2) next(ctx context.Context, match func(rawFrame) bool) (f rawFrame, ok bool) {
	r.t.Helper()
	for {
		select {
		case f, ok := <-r.frames:
			if !ok {
				return rawFrame{}, false
			}
			if match(f) {
				return f, true
			}
		case <-ctx.Done():
			r.t.Fatal("timed out waiting for a frame from the proxy")
		}
	}
}

// waitClosed waits until the server closes the connection and returns the
// GOAWAY it sent before, if any.
func (r *rawH2) waitClosed(ctx context.Context) (goAway *rawFrame) {
	r.t.Helper()
	for {
		f, ok := r.next(ctx, func(f rawFrame) bool { return f.Type == http2.FrameGoAway })
		if !ok {
			return goAway
		}
		goAway = &f
	}
}
