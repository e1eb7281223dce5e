package frames

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestRawReader: the raw reader reads what is there, waits in the poller
// for what is not yet, and reports the peer's close as io.EOF, a passed
// deadline as os.ErrDeadlineExceeded and its own close as net.ErrClosed,
// as net.Conn.Read does.
func TestRawReader(t *testing.T) {
	client, server := tcpPair(t)
	r := newRawReader(server)
	if r == nil {
		t.Fatal("no raw reader for a TCP connection")
	}
	buf := make([]byte, 64)
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := r.read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read %q, %v; want hello", buf[:n], err)
	}

	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = client.Write([]byte("later"))
	}()
	if n, err := r.read(buf); err != nil || string(buf[:n]) != "later" {
		t.Fatalf("read %q, %v; want later (after waiting)", buf[:n], err)
	}

	if err := server.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want %v", err, os.ErrDeadlineExceeded)
	}
	_ = server.SetReadDeadline(time.Time{})

	client.Close()
	if _, err := r.read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
	server.Close()
	if _, err := r.read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after closing: %v, want net.ErrClosed", err)
	}
}

// TestRawReaderNotASocket: connections without a socket of their own are
// read through net.Conn.
func TestRawReaderNotASocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if r := newRawReader(a); r != nil {
		t.Fatal("a raw reader for a pipe")
	}
}
