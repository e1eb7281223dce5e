package frames

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of the Config fields left zero, gRPC's.
const (
	defaultMaxMessageSize   = 4 << 20
	defaultKeepaliveTimeout = 20 * time.Second
)

// Config configures an Engine.
type Config struct {
	// Router places each call. Required.
	Router Router
	// MaxMessageSize is the largest gRPC message forwarded either way.
	// Default 4 MiB.
	MaxMessageSize int
	// MaxConcurrentStreams is advertised to clients, and enforced.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize bounds a header block, as HTTP/2 counts it.
	MaxHeaderListSize uint32
	// ConnectionTimeout bounds a client connection's TLS handshake,
	// preface and first SETTINGS.
	ConnectionTimeout time.Duration
	// DialTimeout bounds a backend connection's dial and handshake.
	DialTimeout time.Duration
	// TLS, when set, serves clients over TLS.
	TLS *tls.Config
	// Keepalive sets the pings on client connections.
	Keepalive Keepalive
	// BackendKeepalive sets the pings on backend connections: Time and
	// Timeout, sent only while calls are on the connection (a backend
	// that takes a call and then hangs fails it with UNAVAILABLE).
	BackendKeepalive Keepalive
	// MaxConnectionIdle, when set, sends away (GOAWAY) a client
	// connection without a call for that long; MaxConnectionAge one that
	// old, whose calls then have MaxConnectionAgeGrace (0: as long as they
	// need) to end.
	MaxConnectionIdle, MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// Observe, when set, is called as each call starts (it may edit
	// r.Header: the backend gets it as Observe leaves it); the function it
	// returns, when not nil, gets the call's result.
	Observe func(r *Request) func(Result)
	// RetryDelay, when set, decides whether an attempt that failed with
	// UNAVAILABLE before the backend answered may be sent again, to
	// another backend, and after how long; attempts counts the attempts
	// made. Without it, only calls that never reached a backend are
	// retried.
	RetryDelay func(r *Request, attempts int) (time.Duration, bool)
	// Logger receives connection events.
	Logger *slog.Logger

	// pingAckDelay and pingAckPatience are how long answers to PINGs
	// may wait for other frames to go with (defaults pingAckDelay and
	// pingAckPatience; tests change them).
	pingAckDelay, pingAckPatience time.Duration
}

// Request is a call as routing sees it.
type Request struct {
	// Method is the call's path, "/package.Service/Method".
	Method string
	// Header is the client's request metadata (no pseudo-headers).
	Header []hpack.HeaderField
	// Client is the client's address.
	Client net.Addr
	// Attempt counts the call's earlier attempts (0 for the first);
	// Tried are their backends, which a retry should avoid.
	Attempt int
	Tried   []*Backend
	// Local is set on calls that came on a connection of ServeLocal:
	// the process's own calls.
	Local bool
}

// Route is where an attempt of a call goes.
type Route struct {
	Backend *Backend
	// Done, when set, is called once with the attempt's result: the
	// call's, or, for an attempt that is retried, UNAVAILABLE.
	Done func(Result)
}

// Result is how a call ended.
type Result struct {
	Status   Status
	Duration time.Duration
	// MessagesIn and BytesIn count the request messages and their bytes
	// (gRPC framing included) read from the client, MessagesOut and
	// BytesOut the responses read from the backend.
	MessagesIn, MessagesOut int64
	BytesIn, BytesOut       int64
	// Trailer is the backend's trailers, when it sent them.
	Trailer []hpack.HeaderField
	// Backend is the backend of the (last) attempt, nil when the call
	// was never routed.
	Backend *Backend
}

// A Router places calls. An error (a gRPC status error) is the call's
// status; the call never reaches a backend, and the Route's Done, when
// set, still sees its result. Route may edit r.Header in place or
// replace it: the backend gets r.Header as Route leaves it.
type Router interface {
	Route(r *Request) (Route, error)
}

// Engine forwards gRPC calls between client and backend HTTP/2
// connections frame by frame.
type Engine struct {
	cfg    Config
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	inFlight atomic.Int64

	// acks writes out the PING answers that waited long enough.
	acks ackFlusher

	// backends maps a key to its *Backend.
	backends sync.Map

	mu    sync.Mutex
	conns map[*conn]struct{}
	// closing: no new client connections; closed: no connections at all.
	// sweeping: sweepBackends runs.
	closing, closed, sweeping bool
	lis                       []net.Listener
	// localLis are ServeLocal's listeners, closed by Close only.
	localLis []net.Listener
}

// New returns an engine; it serves once Serve is called.
func New(cfg Config) (*Engine, error) {
	if cfg.Router == nil {
		return nil, errors.New("frames: Config.Router is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = ^uint32(0)
	}
	if cfg.MaxHeaderListSize == 0 {
		cfg.MaxHeaderListSize = 16 << 20
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.ConnectionTimeout == 0 {
		cfg.ConnectionTimeout = 10 * time.Second
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = defaultMaxMessageSize
	}
	if cfg.pingAckDelay <= 0 {
		cfg.pingAckDelay = pingAckDelay
	}
	if cfg.pingAckPatience <= 0 {
		cfg.pingAckPatience = pingAckPatience
	}
	for _, ka := range []*Keepalive{&cfg.Keepalive, &cfg.BackendKeepalive} {
		if ka.Time > 0 && ka.Timeout <= 0 {
			ka.Timeout = defaultKeepaliveTimeout
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{cfg: cfg, logger: cfg.Logger, ctx: ctx, cancel: cancel,
		acks: ackFlusher{wake: make(chan struct{}, 1)}, conns: make(map[*conn]struct{})}, nil
}

// backendIdleTime is how long a backend may go without a call before the
// engine closes its connection and forgets it: endpoints come and go
// (deregistered, moved), and nothing else tells the engine that one is
// gone for good.
const backendIdleTime = 5 * time.Minute

// sweepBackends forgets the backends that had no call for
// backendIdleTime, until the engine closes.
func (e *Engine) sweepBackends() {
	defer e.wg.Done()
	tick := time.NewTicker(backendIdleTime / 2)
	defer tick.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-tick.C:
		}
		// A backend is forgotten at the second sweep without a call.
		e.backends.Range(func(key, b any) bool {
			if !b.(*Backend).used.Swap(false) && b.(*Backend).idle() {
				e.RemoveBackend(key.(string))
			}
			return true
		})
	}
}

// Backend returns the backend of key, made the first time with dial
// (and tlsConfig, when not nil); addr names it in statuses and logs. The
// key tells apart backends at one address that differ in TLS.
func (e *Engine) Backend(key, addr string, dial func(context.Context) (net.Conn, error), tlsConfig *tls.Config) *Backend {
	if b := e.LookupBackend(key); b != nil {
		return b
	}
	b, _ := e.backends.LoadOrStore(key, &Backend{e: e, addr: addr, dial: dial, tls: tlsConfig})
	return b.(*Backend)
}

// LookupBackend returns the backend of key, or nil. It takes no lock:
// routing asks for every call.
func (e *Engine) LookupBackend(key string) *Backend {
	if b, ok := e.backends.Load(key); ok {
		return b.(*Backend)
	}
	return nil
}

// RemoveBackend forgets the backend of key: its connections close once
// their calls end; a call routed to it after that goes to its successor.
func (e *Engine) RemoveBackend(key string) {
	if b, ok := e.backends.LoadAndDelete(key); ok {
		b.(*Backend).close()
	}
}

// InFlight returns the number of calls being forwarded.
func (e *Engine) InFlight() int64 { return e.inFlight.Load() }

// track adds c to the engine's connections; false when closing.
func (e *Engine) track(c *conn) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.closing && c.backend == nil && !c.local {
		return false
	}
	e.conns[c] = struct{}{}
	return true
}

func (e *Engine) untrack(c *conn) {
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
}

// Serve accepts client connections on lis until Shutdown or Close.
func (e *Engine) Serve(lis net.Listener) error { return e.serve(lis, false) }

// ServeLocal accepts connections of the process itself on lis (in-memory
// ones, say) until Close: their calls go as clients' do, but with
// Request.Local set, without MaxConcurrentStreams, keepalive, idle or age
// limits, and outside InFlight. Shutdown neither closes lis nor sends
// these connections away, nor waits for their calls: it lets the
// process's own calls (health checks, say) go on while the clients' drain,
// and ends them with the rest when it closes the engine.
func (e *Engine) ServeLocal(lis net.Listener) error { return e.serve(lis, true) }

func (e *Engine) serve(lis net.Listener, local bool) error {
	e.mu.Lock()
	if e.closed || e.closing && !local {
		e.mu.Unlock()
		return nil
	}
	if local {
		e.localLis = append(e.localLis, lis)
	} else {
		e.lis = append(e.lis, lis)
	}
	if !e.sweeping {
		// Started by the first Serve, so that an engine never served
		// has no goroutine to stop.
		e.sweeping = true
		e.wg.Add(1)
		go e.sweepBackends()
	}
	e.mu.Unlock()
	for {
		nc, err := lis.Accept()
		if err != nil {
			e.mu.Lock()
			stopped := e.closed || e.closing && !local
			e.mu.Unlock()
			if stopped {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.serveConn(nc, local)
		}()
	}
}

// serveConn runs one client connection to its end.
func (e *Engine) serveConn(nc net.Conn, local bool) {
	_ = nc.SetDeadline(time.Now().Add(e.cfg.ConnectionTimeout))
	if e.cfg.TLS != nil && !local {
		tc := tls.Server(nc, e.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			e.logger.Debug("proxy: TLS handshake failed", "client", nc.RemoteAddr().String(), "error", err)
			_ = nc.Close()
			return
		}
		nc = tc
	}
	c := newConn(e, nc, nil)
	c.local = local
	if addr := nc.RemoteAddr(); addr != nil && !local {
		c.host = clientHost(addr)
	}
	preface := make([]byte, len(clientPreface))
	if _, err := io.ReadFull(c.br, preface); err != nil || string(preface) != clientPreface {
		e.logger.Debug("proxy: client sent no HTTP/2 preface", "client", nc.RemoteAddr().String())
		_ = nc.Close()
		return
	}
	if !e.track(c) {
		_ = nc.Close()
		return
	}
	c.w.mu.Lock()
	c.writeSettingsLocked()
	c.w.flushLocked()
	c.w.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := c.w.loop(); err != nil {
			c.fail(err)
		}
	}()
	f, err := c.fr.ReadFrame()
	sf, ok := f.(*http2.SettingsFrame)
	if err != nil || !ok || sf.IsAck() {
		c.goAway(http2.ErrCodeProtocol, "the first frame must be SETTINGS")
		c.fail(fmt.Errorf("no SETTINGS frame first: %v", err))
		return
	}
	if err := c.onSettings(sf); err != nil {
		c.fail(err)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	c.startTimers()
	c.fail(c.readLoop())
}

// onNewStream starts a call for a client's HEADERS frame.
func (c *conn) onClientHeaders(f *headerBlock) error {
	id := f.streamID
	c.mu.Lock()
	if id <= c.lastPeerStream {
		call := c.streams[id]
		c.mu.Unlock()
		if call != nil {
			call.onHeaders(&c.rb, c, f.fields, f.endStream)
		}
		return nil
	}
	if id%2 == 0 {
		c.mu.Unlock()
		c.goAway(http2.ErrCodeProtocol, "client opened an even stream")
		return fmt.Errorf("client opened stream %d", id)
	}
	c.lastPeerStream = id
	if c.goingAway || c.closed || uint32(len(c.streams)) >= c.e.cfg.MaxConcurrentStreams && !c.local {
		c.mu.Unlock()
		c.rst(&c.rb, id, http2.ErrCodeRefusedStream)
		return nil
	}
	// The process's own calls (health checks) keep no request for a
	// retry: each would hold a 32 KiB chunk until its answer, and a
	// thousand backends' checks come at once. A retry still goes when
	// the request was never sent.
	call := &call{e: c.e, client: c, cid: id, start: time.Now(), committed: c.local}
	c.timers.pingStrikes = 0
	call.up = half{c: call, src: c, srcID: id}
	call.down = half{c: call, dst: c, dstID: id, sendWin: c.peerInitialWin}
	c.streams[id] = call
	c.mu.Unlock()
	if !c.local {
		c.e.inFlight.Add(1)
	}
	c.e.startCall(call, f)
	return nil
}

// onHeaders dispatches a HEADERS frame.
func (c *conn) onHeaders(f *headerBlock) error {
	if c.backend == nil {
		return c.onClientHeaders(f)
	}
	if call := c.lookup(f.streamID); call != nil {
		call.onHeaders(&c.rb, c, f.fields, f.endStream)
	}
	return nil
}

// startCall checks a new call's headers, routes it and opens it.
func (e *Engine) startCall(c *call, f *headerBlock) {
	c.lock(&c.client.rb)
	defer c.unlock()
	var method, path, authority, contentType string
	// The backend's block: the four pseudo-headers first, then the
	// client's fields and x-forwarded-for.
	block := make([]hpack.HeaderField, 4, 4+len(f.fields)+1)
	for _, hf := range f.fields {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":path":
			path = hf.Value
		case ":authority":
			authority = hf.Value
		case ":scheme":
		case "content-type":
			contentType = hf.Value
			block = append(block, hf)
		case "grpc-timeout":
			if d, ok := parseTimeout(hf.Value); ok {
				c.deadline = c.start.Add(d)
			}
			block = append(block, hf)
		default:
			if !hopByHop(hf.Name) && !strings.HasPrefix(hf.Name, ":") {
				block = append(block, hf)
			}
		}
	}
	if f.endStream {
		c.clientEnded = true
		c.up.endPending = true
	}
	switch {
	case f.truncated:
		// As gRPC does: the header list decodes to more than
		// SETTINGS_MAX_HEADER_LIST_SIZE allows.
		e.logger.Debug("proxy: request metadata larger than proxy.max_header_list_size: stream reset",
			"client", c.client.nc.RemoteAddr().String(), "max_header_list_size", e.cfg.MaxHeaderListSize)
		c.client.rst(c.b, c.cid, http2.ErrCodeFrameSize)
		c.abortLocked(Status{Code: codes.ResourceExhausted, Message: "quaestor: request metadata larger than proxy.max_header_list_size"})
		return
	case method != "POST":
		c.failLocked(Status{Code: codes.Unimplemented, Message: fmt.Sprintf("quaestor: HTTP method %q, gRPC calls are POST", method)})
		return
	case !isGRPCContentType(contentType):
		c.failLocked(Status{Code: codes.Unimplemented, Message: fmt.Sprintf("quaestor: content-type %q is not gRPC", contentType)})
		return
	}
	if host := c.client.host; host != "" {
		block = append(block, hpack.HeaderField{Name: "x-forwarded-for", Value: host})
	}
	block[0] = hpack.HeaderField{Name: ":method", Value: "POST"}
	block[1] = hpack.HeaderField{Name: ":scheme", Value: "http"}
	block[2] = hpack.HeaderField{Name: ":path", Value: path}
	block[3] = hpack.HeaderField{Name: ":authority", Value: authority}
	c.reqBlock = block
	c.req = Request{Method: path, Header: block[4:], Client: c.client.nc.RemoteAddr(), Local: c.client.local}
	if e.cfg.Observe != nil {
		c.observed = e.cfg.Observe(&c.req)
		c.takeHeaderEditsLocked()
	}
	c.routeLocked()
}

// takeHeaderEditsLocked makes the backend's header block follow
// req.Header, which the observer or the router may have edited (tracing
// does) or replaced.
func (c *call) takeHeaderEditsLocked() {
	if h := c.req.Header; len(h) != len(c.reqBlock)-4 || len(h) > 0 && &h[0] != &c.reqBlock[4] {
		c.reqBlock = append(c.reqBlock[:4:4], h...)
	}
}

// routeLocked routes an attempt of the call and opens it.
func (c *call) routeLocked() {
	route, err := c.e.cfg.Router.Route(&c.req)
	c.route = route
	if err != nil {
		st := status.Convert(err)
		c.failLocked(Status{Code: st.Code(), Message: st.Message()})
		return
	}
	c.target = route.Backend
	c.takeHeaderEditsLocked()
	c.reqBlock[1].Value = "http"
	if route.Backend.tls != nil {
		c.reqBlock[1].Value = "https"
	}
	route.Backend.attachLocked(c)
}

func isGRPCContentType(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// clientHost is the host part of a client's address.
func clientHost(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.Zone == "" {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	return host
}

func statusUnavailable(msg string) Status { return Status{Code: codes.Unavailable, Message: msg} }

// Shutdown stops accepting connections, sends every client a GOAWAY and
// waits until their calls end or ctx is done; then it closes everything.
// The process's own connections (ServeLocal) go on until then.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closing = true
	for _, lis := range e.lis {
		_ = lis.Close()
	}
	var clients []*conn
	for c := range e.conns {
		if c.backend == nil && !c.local {
			clients = append(clients, c)
		}
	}
	e.mu.Unlock()
	for _, c := range clients {
		c.closeWhenIdle()
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
	for e.InFlight() > 0 {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("%d calls in flight were cancelled", e.InFlight())
		case <-tick.C:
			continue
		}
		break
	}
	e.Close()
	return err
}

// Close closes every connection at once and waits for the engine's
// goroutines.
func (e *Engine) Close() {
	e.mu.Lock()
	e.closing, e.closed = true, true
	for _, lis := range slices.Concat(e.lis, e.localLis) {
		_ = lis.Close()
	}
	conns := make([]*conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.Unlock()
	e.cancel()
	e.backends.Range(func(key, _ any) bool {
		e.RemoveBackend(key.(string))
		return true
	})
	for _, c := range conns {
		c.fail(errors.New("proxy stopped"))
	}
	e.wg.Wait()
}
