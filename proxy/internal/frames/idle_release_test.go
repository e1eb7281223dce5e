package frames

import (
	"bytes"
	"crypto/tls"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quaestor-go/quaestor/internal/testcert"
	"github.com/quaestor-go/quaestor/internal/testwait"
)

// bufferSizes are the read buffers of an engine's client connection and
// backend connection, now and at their largest.
type bufferSizes struct{ client, clientPeak, backend, backendPeak int }

// readBuffers reads the buffer sizes of e's one client connection and
// one backend connection.
func readBuffers(e *testEngine) (s bufferSizes) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for c := range e.conns {
		if c.backend == nil {
			s.client, s.clientPeak = c.readBufferSize()
		} else {
			s.backend, s.backendPeak = c.readBufferSize()
		}
	}
	return s
}

// largeWriteBuffers counts the connections of e whose writer holds a
// buffer grown past smallSpare.
func largeWriteBuffers(e *testEngine) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for c := range e.conns {
		c.w.mu.Lock()
		if cap(c.w.buf) > smallSpare || cap(c.w.spare) > smallSpare {
			n++
		}
		c.w.mu.Unlock()
	}
	return n
}

// TestIdleCallReleasesBuffers: a bidi call that moved a large message
// each way and then goes quiet, still open, gives back the grown buffers
// of both its connections after idleRelease, and the next large message
// goes through whole; over TLS too, whose reads are cut short the same
// way.
func TestIdleCallReleasesBuffers(t *testing.T) {
	ca := testcert.NewCA(t)
	cert, err := tls.LoadX509KeyPair(ca.Issue(t, "proxy", 2))
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
	clientTLS := &tls.Config{RootCAs: ca.Pool()}
	for _, tc := range []struct {
		name  string
		cfg   Config
		creds credentials.TransportCredentials
	}{
		{name: "plain", creds: insecure.NewCredentials()},
		{name: "tls", cfg: Config{TLS: serverTLS}, creds: credentials.NewTLS(clientTLS)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			e := startEchoEngine(t, tc.cfg)
			s, err := dial(t, e.addr, grpc.WithTransportCredentials(tc.creds)).NewStream(ctx, streamDesc, methodBidi)
			if err != nil {
				t.Fatal(err)
			}
			echo := func(i uint32) {
				t.Helper()
				msg := patterned(i, 2<<20)
				if err := s.SendMsg(&msg); err != nil {
					t.Fatal(err)
				}
				var resp []byte
				if err := s.RecvMsg(&resp); err != nil || !bytes.Equal(resp, msg) {
					t.Fatalf("echo %d: %d bytes back, %v", i, len(resp), err)
				}
			}
			echo(1)
			if b := readBuffers(e); b.clientPeak <= initialReadBuf || b.backendPeak <= initialReadBuf {
				t.Fatalf("read buffers %+v after 2 MiB each way, want both grown", b)
			}
			t.Logf("%d connections with large write buffers after 2 MiB each way", largeWriteBuffers(e))
			testwait.For(ctx, t, "the idle call's connections to give back their buffers", func() bool {
				b := readBuffers(e)
				return b.client == initialReadBuf && b.backend == initialReadBuf && largeWriteBuffers(e) == 0
			})
			echo(2)
			if err := s.CloseSend(); err != nil {
				t.Fatal(err)
			}
			var extra []byte
			if err := s.RecvMsg(&extra); err == nil {
				t.Fatalf("a message after the last echo: %d bytes", len(extra))
			}
		})
	}
}

// TestIdleReleaseKeepsHalfReadFrame: a grown connection that waits longer
// than idleRelease for the rest of a frame whose first bytes came keeps
// them: the frame is read whole when the rest comes. The frame is padded,
// so that the Framer reads it, not the engine's own DATA path.
func TestIdleReleaseKeepsHalfReadFrame(t *testing.T) {
	ctx := testContext(t)
	e := startEchoEngine(t, Config{})
	c, frames := openClientStream(t, e)
	var stream []byte
	for i := range uint32(16) {
		stream = append(stream, grpcMessage(patterned(i, 10000))...)
	}
	// All but the last frame in one go: maxFrameSize frames do not fit
	// the small read buffer, which grows.
	last := len(stream) - 3000
	for sent := 0; sent < last; sent += maxFrameSize {
		chunk := stream[sent:min(sent+maxFrameSize, last)]
		if err := c.write(func(w *http2.Framer) error { return w.WriteData(1, false, chunk) }); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(ctx, t, "the client connection's read buffer to grow", func() bool {
		return readBuffers(e).clientPeak > initialReadBuf
	})
	// The half frame is written on the socket itself: the client's
	// reader must have answered the engine's SETTINGS already, or its
	// answer could land in the middle of the frame.
	nextFrame(ctx, t, frames, "the engine's SETTINGS", func(f rawFrame) bool {
		return f.Type == http2.FrameSettings && !f.Flags.Has(http2.FlagSettingsAck)
	})
	var frame bytes.Buffer
	if err := http2.NewFramer(&frame, nil).WriteDataPadded(1, true, stream[last:], make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn.Write(frame.Bytes()[:frameHeaderLen+100]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(idleRelease + time.Second) // what the test is about: nothing comes for this long
	if _, err := c.conn.Write(frame.Bytes()[frameHeaderLen+100:]); err != nil {
		t.Fatal(err)
	}
	if got := clientStreamCount(ctx, t, frames); got != 16*10000 {
		t.Fatalf("the backend counted %d bytes, want %d", got, 16*10000)
	}
}
