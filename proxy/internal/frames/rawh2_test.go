package frames

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Raw HTTP/2 peers, built on http2.Framer, play the clients and backends
// that gRPC cannot: ones that reset streams with chosen codes, never give
// window back, or stop answering pings.

// rawPeer is one raw HTTP/2 connection; writes are serialised.
type rawPeer struct {
	conn net.Conn
	mu   sync.Mutex
	w    *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	r    *http2.Framer
}

func newRawPeer(conn net.Conn) *rawPeer {
	p := &rawPeer{conn: conn, w: http2.NewFramer(conn, nil), r: http2.NewFramer(nil, conn)}
	p.enc = hpack.NewEncoder(&p.hbuf)
	p.r.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.r.MaxHeaderListSize = 1 << 20
	return p
}

// write runs fn with the framer under the write lock.
func (p *rawPeer) write(fn func(w *http2.Framer) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fn(p.w)
}

// headers sends a HEADERS frame with fields.
func (p *rawPeer) headers(stream uint32, endStream bool, fields ...hpack.HeaderField) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hbuf.Reset()
	for _, f := range fields {
		_ = p.enc.WriteField(f)
	}
	return p.w.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: p.hbuf.Bytes(),
		EndStream: endStream, EndHeaders: true})
}

// responseHeaders sends a gRPC response's headers on stream id.
func (p *rawPeer) responseHeaders(id uint32) error {
	return p.headers(id, false, hpackField(":status", "200"), hpackField("content-type", "application/grpc"))
}

// answer sends a whole gRPC response on stream id: its headers, each of
// data as a DATA frame, and trailers with grpc-status 0.
func (p *rawPeer) answer(id uint32, data ...[]byte) {
	_ = p.responseHeaders(id)
	for _, d := range data {
		_ = p.write(func(w *http2.Framer) error { return w.WriteData(id, false, d) })
	}
	_ = p.headers(id, true, hpackField("grpc-status", "0"))
}

// onRequestEnd returns a rawServer handler that runs fn for each stream
// whose request the client has ended (DATA with END_STREAM).
func onRequestEnd(fn func(p *rawPeer, id uint32)) func(p *rawPeer, f http2.Frame) {
	return func(p *rawPeer, f http2.Frame) {
		if df, ok := f.(*http2.DataFrame); ok && df.StreamEnded() {
			fn(p, df.StreamID)
		}
	}
}

// rawServer is a raw HTTP/2 backend on loopback: it sends its SETTINGS,
// acknowledges the client's, and hands every other frame to handle (run by
// the connection's reader).
type rawServer struct {
	addr string
	lis  net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open []net.Conn
	// connected counts the connections being served.
	connected atomic.Int64
}

// startRawServer starts a raw backend whose SETTINGS carry settings.
func startRawServer(t testing.TB, handle func(p *rawPeer, f http2.Frame), settings ...http2.Setting) *rawServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{addr: lis.Addr().String(), lis: lis}
	s.wg.Go(func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.open = append(s.open, conn)
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(conn, handle, settings) })
		}
	})
	t.Cleanup(func() {
		_ = lis.Close()
		s.mu.Lock()
		for _, c := range s.open {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) serve(conn net.Conn, handle func(p *rawPeer, f http2.Frame), settings []http2.Setting) {
	s.connected.Add(1)
	defer s.connected.Add(-1)
	defer conn.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(conn, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	p := newRawPeer(conn)
	if err := p.write(func(w *http2.Framer) error { return w.WriteSettings(settings...) }); err != nil {
		return
	}
	for {
		f, err := p.r.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				continue
			}
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = p.write(func(w *http2.Framer) error { return w.WriteSettingsAck() })
			}
			continue
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = p.write(func(w *http2.Framer) error { return w.WritePing(true, f.Data) })
			}
			continue
		}
		handle(p, f)
	}
}

// rawClient is a raw HTTP/2 client of the engine. Its reader hands frames
// to the frames channel (closed when the connection ends), and answers
// pings only when answerPings is set.
type rawClient struct {
	*rawPeer
	// keepData: DATA payloads are copied into the frames.
	keepData atomic.Bool
	done     chan struct{}
}

// rawFrame is a copy of what the tests look at in a frame the engine sent
// (the framer reuses its frames).
type rawFrame struct {
	http2.FrameHeader
	Code    http2.ErrCode // RST_STREAM, GOAWAY
	Debug   string        // GOAWAY
	Data    int           // DATA payload length
	Payload []byte        // DATA payload, when the client keeps it
	Ping    bool          // a PING that is not an ack
	Headers []hpack.HeaderField
}

func dialRawClient(t testing.TB, addr string, answerPings bool, settings ...http2.Setting) (*rawClient, <-chan rawFrame) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{rawPeer: newRawPeer(conn), done: make(chan struct{})}
	out := make(chan rawFrame, 4096)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.write(func(w *http2.Framer) error { return w.WriteSettings(settings...) }); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		defer close(out)
		for {
			f, err := c.r.ReadFrame()
			if err != nil {
				var se http2.StreamError
				if errors.As(err, &se) {
					continue
				}
				return
			}
			rf := rawFrame{FrameHeader: f.Header()}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = c.write(func(w *http2.Framer) error { return w.WriteSettingsAck() })
				}
			case *http2.PingFrame:
				rf.Ping = !f.IsAck()
				if rf.Ping && answerPings {
					_ = c.write(func(w *http2.Framer) error { return w.WritePing(true, f.Data) })
				}
			case *http2.GoAwayFrame:
				rf.Code, rf.Debug = f.ErrCode, string(f.DebugData())
			case *http2.RSTStreamFrame:
				rf.Code = f.ErrCode
			case *http2.DataFrame:
				rf.Data = len(f.Data())
				if c.keepData.Load() {
					rf.Payload = append([]byte(nil), f.Data()...)
				}
			case *http2.MetaHeadersFrame:
				rf.Headers = append([]hpack.HeaderField(nil), f.Fields...)
			}
			select {
			case out <- rf:
			default: // nobody looks at this many frames
			}
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-c.done
	})
	return c, out
}

// grpcRequestHeaders are the headers of a gRPC call to method.
func grpcRequestHeaders(method string) []hpack.HeaderField {
	return []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: method}, {Name: ":authority", Value: "frames-test"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}
}

// fieldValue is the value of name in fields, or "".
func fieldValue(fields []hpack.HeaderField, name string) string {
	for _, f := range fields {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// nextFrame reads frames until one matches; it fails the test when the
// connection ends or ctx does first.
func nextFrame(ctx context.Context, t testing.TB, frames <-chan rawFrame, what string, match func(rawFrame) bool) rawFrame {
	t.Helper()
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatalf("connection closed before %s", what)
			}
			if match(f) {
				return f
			}
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

// waitClosed reads frames until the engine closes the connection, and
// returns them.
func waitClosed(ctx context.Context, t testing.TB, frames <-chan rawFrame) []rawFrame {
	t.Helper()
	var seen []rawFrame
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return seen
			}
			seen = append(seen, f)
		case <-ctx.Done():
			t.Fatalf("waiting for the connection to close: %v", ctx.Err())
		}
	}
}
