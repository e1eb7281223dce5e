package proxy_test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// startSilentListener accepts connections and never answers: an instance
// whose process is alive but wedged before it speaks gRPC.
func startSilentListener(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(io.Discard, conn) })
		}
	})
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
}

// connCutter is a TCP relay in front of a backend whose connections can
// be cut at once, both ways.
type connCutter struct {
	addr   string
	target string
	lis    net.Listener
	wg     sync.WaitGroup
	// refuse makes it close new connections at once, as a host whose
	// backend is gone does (where no RST comes, a connect times out).
	refuse atomic.Bool
	mu     sync.Mutex
	pairs  map[net.Conn]net.Conn
}

func startConnCutter(t *testing.T, target string) *connCutter {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &connCutter{addr: lis.Addr().String(), target: target, lis: lis, pairs: map[net.Conn]net.Conn{}}
	c.wg.Go(c.accept)
	t.Cleanup(func() {
		_ = lis.Close()
		c.cut()
		c.wg.Wait()
	})
	return c
}

func (c *connCutter) accept() {
	for {
		client, err := c.lis.Accept()
		if err != nil {
			return
		}
		if c.refuse.Load() {
			_ = client.Close()
			continue
		}
		server, err := net.Dial("tcp", c.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		c.mu.Lock()
		c.pairs[client] = server
		c.mu.Unlock()
		relay := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			c.mu.Lock()
			delete(c.pairs, client)
			c.mu.Unlock()
		}
		c.wg.Go(func() { relay(server, client) })
		c.wg.Go(func() { relay(client, server) })
	}
}

// cut closes every relayed connection and returns how many there were.
func (c *connCutter) cut() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.pairs)
	for client, server := range c.pairs {
		_ = client.Close()
		_ = server.Close()
	}
	clear(c.pairs)
	return n
}
