package frames

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// The tests drive the engine with real grpc-go servers and clients that
// exchange raw bytes (rawCodec), so that message sizes and contents are
// the tests' own.

// Methods of the test backend (testHandler).
const (
	methodUnary        = "/test.Echo/Unary"        // one request, the same bytes back
	methodBidi         = "/test.Echo/Bidi"         // each request echoed as it comes
	methodServerStream = "/test.Echo/ServerStream" // request: count, size (uint32 each); count responses of size bytes
	methodClientStream = "/test.Echo/ClientStream" // requests until EOF; one response: their total size (uint64)
)

// rawCodec sends messages as they are: *[]byte both ways.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "raw" }

var _ encoding.Codec = rawCodec{}

// quietLog drops the engine's logs.
var quietLog = slog.New(slog.DiscardHandler)

// testBackend is a real gRPC server on loopback.
type testBackend struct {
	addr string
	srv  *grpc.Server
}

// startBackend serves handler for every method (testHandler when nil)
// until the test ends.
func startBackend(t testing.TB, handler grpc.StreamHandler, opts ...grpc.ServerOption) *testBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if handler == nil {
		handler = testHandler
	}
	opts = append([]grpc.ServerOption{
		grpc.UnknownServiceHandler(handler),
		grpc.ForceServerCodec(rawCodec{}),
		grpc.MaxRecvMsgSize(64 << 20), grpc.MaxSendMsgSize(64 << 20),
	}, opts...)
	srv := grpc.NewServer(opts...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return &testBackend{addr: lis.Addr().String(), srv: srv}
}

// testHandler plays the methods above.
func testHandler(_ any, ss grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(ss)
	switch method {
	case methodUnary:
		var req []byte
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		return ss.SendMsg(&req)
	case methodBidi:
		for {
			var req []byte
			if err := ss.RecvMsg(&req); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if err := ss.SendMsg(&req); err != nil {
				return err
			}
		}
	case methodServerStream:
		return sendServerStream(ss, nil)
	case methodClientStream:
		var total uint64
		for {
			var req []byte
			err := ss.RecvMsg(&req)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
			total += uint64(len(req))
		}
		resp := binary.BigEndian.AppendUint64(nil, total)
		return ss.SendMsg(&resp)
	}
	return status.Errorf(12, "unknown method %q", method)
}

// serverStreamRequest asks methodServerStream for count messages of size
// bytes.
func serverStreamRequest(count, size uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, count), size)
}

// patterned is message i of a stream: size bytes that tell where they
// are, so that a byte out of place shows.
func patterned(i uint32, size int) []byte {
	b := make([]byte, size)
	for k := range b {
		b[k] = byte(uint32(k)*31 + i*7)
	}
	return b
}

// staticRouter routes every call to one backend.
type staticRouter struct{ b *Backend }

func (r staticRouter) Route(*Request) (Route, error) { return Route{Backend: r.b}, nil }

// routerFunc is a Router of one function.
type routerFunc func(*Request) (Route, error)

func (f routerFunc) Route(r *Request) (Route, error) { return f(r) }

// testEngine is an engine serving on loopback.
type testEngine struct {
	*Engine
	addr string
}

// dialBackend returns a Backend dialing addr over TCP.
func dialBackend(e *Engine, addr string) *Backend {
	return e.Backend(addr, addr, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}, nil)
}

// startEngine serves an engine built from cfg until the test ends. When
// cfg has no Router, it routes every call to backendAddr.
func startEngine(t testing.TB, cfg Config, backendAddr string) *testEngine {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLog
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 64 << 20
	}
	var late lateRouter
	if cfg.Router == nil {
		cfg.Router = &late
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if backendAddr != "" {
		late.set(staticRouter{dialBackend(e, backendAddr)})
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Serve(lis) }()
	t.Cleanup(func() {
		e.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testEngine{Engine: e, addr: lis.Addr().String()}
}

// lateRouter is a router set once the engine exists.
type lateRouter struct {
	mu sync.Mutex
	r  Router
}

func (l *lateRouter) set(r Router) {
	l.mu.Lock()
	l.r = r
	l.mu.Unlock()
}

func (l *lateRouter) Route(req *Request) (Route, error) {
	l.mu.Lock()
	r := l.r
	l.mu.Unlock()
	return r.Route(req)
}

// dial returns a gRPC client connection to addr using rawCodec, closed
// when the test ends.
func dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}),
			grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	}, opts...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// unary makes a unary call of method with req.
func unary(ctx context.Context, cc *grpc.ClientConn, method string, req []byte, opts ...grpc.CallOption) ([]byte, error) {
	var resp []byte
	err := cc.Invoke(ctx, method, &req, &resp, opts...)
	return resp, err
}

var streamDesc = &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}

// testContext is the bounded context of a test.
func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func hpackField(name, value string) hpack.HeaderField {
	return hpack.HeaderField{Name: name, Value: value}
}

// serverStreamWhole asks the backend, through cc, for a server stream of
// count patterned messages of size bytes, and checks that each arrives
// whole and in order, and then the end of the stream.
func serverStreamWhole(ctx context.Context, t *testing.T, cc *grpc.ClientConn, count, size uint32) {
	t.Helper()
	if err := serverStreamCheck(ctx, cc, count, size); err != nil {
		t.Fatal(err)
	}
}

// serverStreamCheck calls methodServerStream for count messages of size
// bytes and checks every byte of them, and the end of the stream.
func serverStreamCheck(ctx context.Context, cc *grpc.ClientConn, count, size uint32) error {
	s, err := cc.NewStream(ctx, streamDesc, methodServerStream)
	if err != nil {
		return err
	}
	req := serverStreamRequest(count, size)
	if err := s.SendMsg(&req); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for i := range count {
		var msg []byte
		if err := s.RecvMsg(&msg); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if !bytes.Equal(msg, patterned(i, int(size))) {
			return fmt.Errorf("message %d differs", i)
		}
	}
	var extra []byte
	if err := s.RecvMsg(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("after the last message: %v, want EOF", err)
	}
	return nil
}

// startEchoEngine starts a backend with the test handler and an engine
// routing every call to it.
func startEchoEngine(t testing.TB, cfg Config) *testEngine {
	t.Helper()
	return startEngine(t, cfg, startBackend(t, nil).addr)
}

// sendServerStream answers a methodServerStream request on ss, calling
// sent (when not nil) with each message's size once it is sent.
func sendServerStream(ss grpc.ServerStream, sent func(size uint32)) error {
	var req []byte
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	count, size := binary.BigEndian.Uint32(req), binary.BigEndian.Uint32(req[4:])
	for i := range count {
		msg := patterned(i, int(size))
		if err := ss.SendMsg(&msg); err != nil {
			return err
		}
		if sent != nil {
			sent(size)
		}
	}
	return nil
}
