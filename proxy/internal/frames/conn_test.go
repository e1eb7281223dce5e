package frames

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestConnectionTimeout: a client that connects and then sends nothing,
// or only the preface, is closed after ConnectionTimeout.
func TestConnectionTimeout(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{ConnectionTimeout: 100 * time.Millisecond}, "")
	for _, tt := range []struct {
		name string
		send string
	}{
		{name: "nothing"},
		{name: "preface only", send: http2.ClientPreface},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
			deadline, _ := ctx.Deadline()
			_ = c.SetReadDeadline(deadline)
			_, err = io.Copy(io.Discard, c) // until the engine closes it
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the engine kept a silent client past ConnectionTimeout")
			}
		})
	}
}

// TestNotHTTP2Client: a client that does not speak HTTP/2 is closed.
func TestNotHTTP2Client(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{}, "")
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	deadline, _ := ctx.Deadline()
	_ = c.SetReadDeadline(deadline)
	n, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the engine kept an HTTP/1.1 client")
	}
	if n != 0 {
		t.Errorf("the engine answered an HTTP/1.1 client with %d bytes", n)
	}
}

// TestFirstFrameNotSettings: a client whose first frame is not SETTINGS
// gets a GOAWAY PROTOCOL_ERROR.
func TestFirstFrameNotSettings(t *testing.T) {
	ctx := testContext(t)
	e := startEngine(t, Config{}, "")
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := newRawPeer(c)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := p.write(func(w *http2.Framer) error { return w.WritePing(false, [8]byte{}) }); err != nil {
		t.Fatal(err)
	}
	deadline, _ := ctx.Deadline()
	_ = c.SetReadDeadline(deadline)
	var goAway *http2.GoAwayFrame
	for {
		f, err := p.r.ReadFrame()
		if err != nil {
			break
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			goAway = g
			break
		}
	}
	if goAway == nil || goAway.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("GOAWAY %v, want PROTOCOL_ERROR", goAway)
	}
}
