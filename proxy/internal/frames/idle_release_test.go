package frames

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
	serverTLS, clientTLS := selfSignedTLS(t)
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
			waitFor(ctx, t, "the idle call's connections to give back their buffers", func() bool {
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

// selfSignedTLS returns a server configuration with a certificate for
// 127.0.0.1 and a client configuration that trusts it.
func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{"h2"}}
	return server, &tls.Config{RootCAs: pool}
}

// TestIdleReleaseKeepsHalfReadFrame: a grown connection that waits longer
// than idleRelease for the rest of a frame whose first bytes came keeps
// them: the frame is read whole when the rest comes. The frame is padded,
// so that the Framer reads it, not the engine's own DATA path.
func TestIdleReleaseKeepsHalfReadFrame(t *testing.T) {
	ctx := testContext(t)
	e := startEchoEngine(t, Config{})
	c, frames := dialRawClient(t, e.addr, true)
	c.keepData.Store(true)
	if err := c.headers(1, false, grpcRequestHeaders(methodClientStream)...); err != nil {
		t.Fatal(err)
	}
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
	waitFor(ctx, t, "the client connection's read buffer to grow", func() bool {
		return readBuffers(e).clientPeak > initialReadBuf
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
	var resp []byte
	for {
		f := nextFrame(ctx, t, frames, "the response", func(f rawFrame) bool { return f.StreamID == 1 })
		if f.Type == http2.FrameData {
			resp = append(resp, f.Payload...)
			continue
		}
		if f.Type != http2.FrameHeaders || !f.Flags.Has(http2.FlagHeadersEndStream) {
			continue
		}
		if fieldValue(f.Headers, "grpc-status") != "0" {
			t.Fatalf("status %v", f.Headers)
		}
		break
	}
	msgs := readMessages(t, resp)
	if len(msgs) != 1 || len(msgs[0]) != 8 {
		t.Fatalf("response %x, want one 8-byte count", resp)
	}
	if got := binary.BigEndian.Uint64(msgs[0]); got != 16*10000 {
		t.Fatalf("the backend counted %d bytes, want %d", got, 16*10000)
	}
}
