package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
)

// localListener hands the proxy's own gRPC server (health, reflection,
// discovery, ...) in-memory connections: the forwarding engine reaches
// those services as it reaches any backend, over one of these.
type localListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func newLocalListener() *localListener {
	return &localListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

var errLocalClosed = errors.New("proxy: the proxy's own services are stopped")

// dial returns the client end of a new in-memory connection whose server
// end Accept returns.
func (l *localListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
	case <-ctx.Done():
	}
	_ = client.Close()
	_ = server.Close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, errLocalClosed
}

func (l *localListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *localListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

func (l *localListener) Addr() net.Addr { return localAddr{} }

// localAddr names the in-memory connections.
type localAddr struct{}

func (localAddr) Network() string { return "local" }
func (localAddr) String() string  { return "quaestor-local" }
