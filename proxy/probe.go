package proxy

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/proxy/internal/frames"
)

// Probes: the health checks and load polls of routing's Monitor
// (routing.MonitorOptions.Connect) go through the engine, over one
// in-memory connection (frames.Engine.ServeLocal), each call naming its
// endpoint in probeHeader. The engine sends it on the connection its
// forwarded calls to that endpoint use: a backend has one connection from
// the proxy, and its health is checked on the connection its calls take.

// probeHeader names, on a probe's call, the endpoint it is for:
// "<service> <host:port>". The router takes it out; the backend never
// sees it.
const probeHeader = "quaestor-probe-endpoint"

// probes is the proxy's side of the probe calls.
type probes struct {
	engine         *frames.Engine
	maxMessageSize int
	lis            *localListener
	// connect makes cc, at the first ProbeConn; serve starts serving
	// lis, at cc's first dial; done is closed when that ends.
	connect sync.Once
	cc      *grpc.ClientConn
	err     error
	serve   sync.Once
	done    chan struct{}
}

func newProbes(engine *frames.Engine, maxMessageSize int) *probes {
	return &probes{engine: engine, maxMessageSize: maxMessageSize, lis: newLocalListener(), done: make(chan struct{})}
}

// conn returns the client of the in-memory connection, made at the first
// call.
func (p *probes) conn() (*grpc.ClientConn, error) {
	p.connect.Do(func() {
		p.cc, p.err = grpc.NewClient("passthrough:///quaestor-probes",
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(p.dial),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(p.maxMessageSize), grpc.MaxCallSendMsgSize(p.maxMessageSize)),
		)
	})
	return p.cc, p.err
}

// dial makes an in-memory connection to the engine.
func (p *probes) dial(ctx context.Context, _ string) (net.Conn, error) {
	p.serve.Do(func() {
		go func() {
			defer close(p.done)
			_ = p.engine.ServeLocal(p.lis)
		}()
	})
	return p.lis.dial(ctx)
}

// stop ends the probe calls; the engine must be closed already, or
// closing (it closes the connection's listener).
func (p *probes) stop() {
	p.connect.Do(func() { p.err = net.ErrClosed })
	p.serve.Do(func() { close(p.done) }) // never served
	_ = p.lis.Close()
	<-p.done
	if p.cc != nil {
		_ = p.cc.Close()
	}
}

// ProbeConn returns the connection for the health checks and load polls
// of the endpoint addr of service (routing.MonitorOptions.Connect): their
// calls go to that endpoint, whatever its health, and its TLS is the
// service's, as for forwarded calls; they are not counted as the proxy's
// calls (metrics, access log, InFlight), and a drain does not wait for
// them. Calls on it fail with UNAVAILABLE once the server stopped: stop
// the monitor first (Options.BeforeDrain is the place).
func (s *Server) ProbeConn(service, addr string) grpc.ClientConnInterface {
	return &probeConn{probes: s.probes, addr: addr, endpoint: service + " " + addr}
}

// probeConn sends every call to one endpoint.
type probeConn struct {
	probes         *probes
	addr, endpoint string
}

func (p *probeConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	cc, err := p.probes.conn()
	if err != nil {
		return status.Errorf(codes.Unavailable, "quaestor: probing %s: %v", p.addr, err)
	}
	return cc.Invoke(p.context(ctx), method, args, reply, p.options(opts)...)
}

func (p *probeConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cc, err := p.probes.conn()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "quaestor: probing %s: %v", p.addr, err)
	}
	return cc.NewStream(p.context(ctx), desc, method, p.options(opts)...)
}

func (p *probeConn) context(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, probeHeader, p.endpoint)
}

// options adds the endpoint as the call's :authority, as a connection of
// its own to it would send.
func (p *probeConn) options(opts []grpc.CallOption) []grpc.CallOption {
	return append(opts[:len(opts):len(opts)], grpc.CallAuthority(p.addr))
}

// routeProbe places a call of the process's own on the endpoint its
// probeHeader names, and takes the header out; a retry (of an attempt
// that never reached the endpoint) goes to the same endpoint.
func (r *callRouter) routeProbe(req *frames.Request) (frames.Route, error) {
	if n := len(req.Tried); n > 0 {
		return frames.Route{Backend: req.Tried[n-1]}, nil
	}
	i := slices.IndexFunc(req.Header, func(f hpack.HeaderField) bool { return f.Name == probeHeader })
	if i < 0 {
		return frames.Route{}, status.Errorf(codes.Internal, "quaestor: a call of the proxy's own to %s names no endpoint (%s)", req.Method, probeHeader)
	}
	service, addr, ok := strings.Cut(req.Header[i].Value, " ")
	if !ok {
		return frames.Route{}, status.Errorf(codes.Internal, "quaestor: %s %q is not \"<service> <host:port>\"", probeHeader, req.Header[i].Value)
	}
	req.Header = slices.Delete(req.Header, i, i+1)
	return frames.Route{Backend: r.service(service).backend(addr)}, nil
}

var _ grpc.ClientConnInterface = (*probeConn)(nil)
