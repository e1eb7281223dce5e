package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/quaestor-go/quaestor/internal/testwait"
	"github.com/quaestor-go/quaestor/proxy"
)

// The client-fault tests of the proxy's limits: connections, streams,
// metadata, pings, and the timeouts that free what stalled clients hold.

// TestFaultHugeMetadata: metadata above proxy.max_header_list_size is
// refused before any backend sees the call; gRPC clients learn the limit
// from SETTINGS and refuse to send it, with a status naming the limit.
// Large but legitimate metadata passes.
func TestFaultHugeMetadata(t *testing.T) {
	be := startFaultBackend(t, 0, 0)
	env := startFaultProxy(t, be.addr, nil)
	ctx := faultContext(t)
	cc := dial(t, env.addr)

	token := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.Repeat("t", 16<<10))
	if err := echoFault(token, cc); err != nil {
		t.Fatalf("a call with 16 KiB of metadata: %v", err)
	}
	calls := be.calls.Load()
	huge := metadata.AppendToOutgoingContext(ctx, "x-huge", strings.Repeat("h", 128<<10))
	err := echoFault(huge, cc)
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "header list size") || !strings.Contains(st.Message(), "65536") {
		t.Errorf("a call with 128 KiB of metadata: %v, want INTERNAL naming the 65536-byte limit", err)
	}
	t.Logf("gRPC client, 128 KiB of metadata: %v", err)

	// Raw clients that ignore SETTINGS. gRPC's framer (x/net/http2)
	// closes the connection when decoding would exceed the limit by far
	// (a string longer than the limit, CONTINUATION frames past it), and
	// resets the stream when one frame decodes to more than the limit.
	echoMethod := "/" + faultService + "/Echo"
	var many []hpack.HeaderField
	for range 512 {
		many = append(many, hpack.HeaderField{Name: "x-many", Value: strings.Repeat("m", 256)})
	}
	for _, tc := range []struct {
		name      string
		block     []byte
		wantReset bool
	}{
		{"one 128 KiB value", requestHeaders(echoMethod, hpack.HeaderField{Name: "x-huge", Value: strings.Repeat("h", 128<<10)}), false},
		{"512 values of 256 bytes", requestHeaders(echoMethod, many...), false},
		{"HPACK bomb: a 4 KiB value indexed 20 times", hpackBomb(echoMethod, 4000, 20), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, env.addr)
			r.preface()
			const chunk = 16 << 10
			first := tc.block[:min(chunk, len(tc.block))]
			if err := r.w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndStream: true, EndHeaders: len(first) == len(tc.block)}); err != nil {
				t.Fatal(err)
			}
			for rest := tc.block[len(first):]; len(rest) > 0; {
				n := min(chunk, len(rest))
				if err := r.w.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
					break // closed already
				}
				rest = rest[n:]
			}
			f, open := r.next(ctx, func(f rawFrame) bool { return f.StreamID == 1 || f.Type == http2.FrameGoAway })
			switch {
			case !open:
				t.Logf("%d bytes of headers: connection closed", len(tc.block))
			case f.Type == http2.FrameGoAway:
				t.Logf("%d bytes of headers: GOAWAY %v %q", len(tc.block), f.Code, f.Debug)
			default:
				t.Logf("%d bytes of headers: %v %v", len(tc.block), f.Type, f.Code)
			}
			if reset := open && f.Type == http2.FrameRSTStream; reset != tc.wantReset {
				t.Errorf("got %+v (connection open %v), want the stream reset: %v", f, open, tc.wantReset)
			}
			mustServeOthers(ctx, t, env.addr)
		})
	}
	if got := be.calls.Load() - calls; got != 5*3 {
		t.Errorf("the backend saw %d calls, want only the 15 of the well-behaved clients", got)
	}
}

// TestFaultConnectionLimit: with proxy.max_connections N, N clients are
// served and the next is refused at once, with UNAVAILABLE; a flood of
// refused connections is logged once per interval, not per connection;
// a freed slot is taken by a waiting client.
func TestFaultConnectionLimit(t *testing.T) {
	const limit = 3
	be := startFaultBackend(t, 0, 0)
	env := startFaultProxy(t, be.addr, func(c *proxy.Config) { c.MaxConnections = limit })
	ctx := faultContext(t)
	start := time.Now()
	var served []*grpc.ClientConn
	for range limit {
		cc := dial(t, env.addr)
		if err := echoFault(ctx, cc); err != nil {
			t.Fatalf("a client within the limit: %v", err)
		}
		served = append(served, cc)
	}
	testwait.For(ctx, t, "the proxy to count the connections", func() bool { return env.server.Connections() == limit })

	extra := dial(t, env.addr)
	err := echoFault(ctx, extra)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the client over the limit: %v, want UNAVAILABLE", err)
	}
	t.Logf("client over max_connections sees: %v", err)
	flood := scale(50, 2000)
	for range flood {
		conn, err := net.Dial("tcp", env.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection over the limit was served")
		}
		_ = conn.Close()
	}
	for _, cc := range served {
		if err := echoFault(ctx, cc); err != nil {
			t.Fatalf("a client within the limit, during the flood: %v", err)
		}
	}
	lines := env.log.Count("proxy.max_connections reached")
	if most := 1 + int(time.Since(start)/(10*time.Second)); lines < 1 || lines > most {
		t.Errorf("%d log lines for %d refused connections, want 1 to %d (one per 10s)", lines, flood+1, most)
	}
	if env.server.Connections() != limit {
		t.Errorf("open connections: %d, want %d", env.server.Connections(), limit)
	}

	_ = served[0].Close()
	testwait.For(ctx, t, "the closed client's slot to be freed", func() bool { return env.server.Connections() == limit-1 })
	if err := echoFault(ctx, extra, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("the waiting client, once a slot is free: %v", err)
	}
}

// TestFaultStreamLimit: calls beyond proxy.max_concurrent_streams on one
// connection wait for a stream to end (HTTP/2 semantics); they do not
// fail. A raw client that ignores the SETTINGS gets the extra stream
// refused (RST_STREAM REFUSED_STREAM), which gRPC clients retry.
func TestFaultStreamLimit(t *testing.T) {
	const limit, extra = 4, 3
	be := startFaultBackend(t, 0, 0)
	env := startFaultProxy(t, be.addr, func(c *proxy.Config) { c.MaxConcurrentStreams = limit })
	ctx := faultContext(t)
	cc := dial(t, env.addr)

	errs := make(chan error, limit+extra)
	var wg sync.WaitGroup
	for range limit + extra {
		wg.Go(func() { errs <- holdCall(ctx, cc) })
	}
	testwait.For(ctx, t, "the first calls to reach the backend", func() bool { return be.holding.Load() == limit })
	if got := env.server.InFlight(); got != limit || len(errs) != 0 {
		t.Fatalf("in flight %d with %d calls ended, want %d in flight and the others waiting", got, len(errs), limit)
	}

	r := dialRaw(t, env.addr)
	r.preface()
	for i := range uint32(limit + 1) {
		r.request(1+2*i, "/"+faultService+"/Hold")
	}
	f, ok := r.next(ctx, func(f rawFrame) bool { return f.Type == http2.FrameRSTStream })
	if !ok || f.StreamID != 1+2*limit || f.Code != http2.ErrCodeRefusedStream {
		t.Errorf("raw client's stream %d over the limit: %+v (open %v), want RST_STREAM REFUSED_STREAM", 1+2*limit, f, ok)
	}
	// Close only once the raw client's calls are all held at the backend:
	// a call the proxy had not yet forwarded would never be cancelled there.
	testwait.For(ctx, t, "the raw client's calls to reach the backend", func() bool { return be.holding.Load() == 2*limit })
	_ = r.conn.Close()
	testwait.For(ctx, t, "the raw client's calls to be cancelled", func() bool { return be.cancelled.Load() == limit })

	// Each ended call lets a waiting one start; all succeed.
	for range limit + extra {
		be.release <- struct{}{}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a call beyond the stream limit: %v, want it to wait and succeed", err)
		}
	}
}

// holdCall makes one Hold call and returns its error (nil once released).
func holdCall(ctx context.Context, cc grpc.ClientConnInterface) error {
	s, err := cc.NewStream(ctx, bidi, "/"+faultService+"/Hold")
	if err != nil {
		return err
	}
	if err := s.SendMsg(&wrapperspb.BytesValue{}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	if err := s.RecvMsg(new(wrapperspb.BytesValue)); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// TestFaultPingFlood: a client pinging more often than
// proxy.keepalive.min_time gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings"
// and is closed; other clients are unaffected. Under CHAOS, also a real
// gRPC client whose keepalive (10s) is below the proxy's min_time.
func TestFaultPingFlood(t *testing.T) {
	be := startFaultBackend(t, 0, 0)
	minTime := 10 * time.Second
	if chaos() {
		minTime = time.Minute
	}
	env := startFaultProxy(t, be.addr, func(c *proxy.Config) { c.Keepalive.MinTime = minTime })
	ctx := faultContext(t)

	r := dialRaw(t, env.addr)
	r.preface()
	for i := range 10 {
		if err := r.w.WritePing(false, [8]byte{byte(i)}); err != nil {
			break // closed already
		}
	}
	goAway := r.waitClosed(ctx)
	if goAway == nil || goAway.Code != http2.ErrCodeEnhanceYourCalm || goAway.Debug != "too_many_pings" {
		t.Errorf("ping flood: GOAWAY %+v, want ENHANCE_YOUR_CALM too_many_pings", goAway)
	}
	mustServeOthers(ctx, t, env.addr)

	if !chaos() {
		return
	}
	aggressive, err := grpc.NewClient(env.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = aggressive.Close() })
	start := time.Now()
	err = holdCall(ctx, aggressive)
	t.Logf("gRPC client with a 10s keepalive against min_time %v: call ended after %v with %v", minTime, time.Since(start).Round(time.Second), err)
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "too_many_pings") {
		t.Errorf("the aggressive client's call: %v, want UNAVAILABLE naming too_many_pings", err)
	}
	mustServeOthers(ctx, t, env.addr)
}

// TestFaultSlowlorisCannotStarve: stalled connections that take every
// slot of proxy.max_connections are closed after
// proxy.connection_timeout, and a waiting client is then served.
func TestFaultSlowlorisCannotStarve(t *testing.T) {
	const limit, timeout = 2, 500 * time.Millisecond
	be := startFaultBackend(t, 0, 0)
	env := startFaultProxy(t, be.addr, func(c *proxy.Config) {
		c.MaxConnections = limit
		c.ConnectionTimeout = timeout
	})
	ctx := faultContext(t)
	var stalled []*rawH2
	for range limit {
		r := dialRaw(t, env.addr)
		r.write([]byte(http2.ClientPreface[:4]))
		stalled = append(stalled, r)
	}
	testwait.For(ctx, t, "the stalled connections to hold every slot", func() bool { return env.server.Connections() == limit })
	start := time.Now()
	cc := dial(t, env.addr)
	if err := echoFault(ctx, cc, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("a client behind stalled connections: %v", err)
	}
	t.Logf("client served %v after %d stalled connections took every slot (connection_timeout %v)", time.Since(start).Round(time.Millisecond), limit, timeout)
	for _, r := range stalled {
		r.waitClosed(ctx)
	}
}

// TestFaultStreamHog: one client holding every stream its connection may
// open, with more calls queued behind them, does not delay another
// client's calls: streams are limited per connection.
func TestFaultStreamHog(t *testing.T) {
	limit := scale(64, proxy.DefaultMaxConcurrentStreams)
	be := startFaultBackend(t, 0, 0)
	env := startFaultProxy(t, be.addr, func(c *proxy.Config) { c.MaxConcurrentStreams = limit })
	ctx := faultContext(t)
	other := dial(t, env.addr)
	calls := scale(50, 1000)
	timeCalls := func() time.Duration {
		start := time.Now()
		for range calls {
			if err := echoFault(ctx, other); err != nil {
				t.Fatalf("another client's call while one holds %d streams: %v", limit, err)
			}
		}
		return time.Since(start) / time.Duration(calls)
	}
	alone := timeCalls()

	hog := dial(t, env.addr)
	hogCtx, stopHog := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range limit + limit/2 {
		wg.Go(func() { _ = holdCall(hogCtx, hog) })
	}
	defer wg.Wait()
	defer stopHog()
	testwait.For(ctx, t, "the hog to hold every stream", func() bool { return be.holding.Load() == int64(limit) })
	hogged := timeCalls()
	t.Logf("%d calls of another client: %v each alone, %v while one held %d streams (+%d queued)",
		calls, alone.Round(time.Microsecond), hogged.Round(time.Microsecond), limit, limit/2)
}

// hpackBomb encodes a call to method whose headers are small on the wire
// and large decoded: one value of size bytes in HPACK's dynamic table,
// then referenced repeat times.
func hpackBomb(method string, size, repeat int) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, hf := range []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: method}, {Name: ":authority", Value: "quaestor"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	} {
		_ = enc.WriteField(hf)
	}
	bomb := hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("b", size)}
	for range repeat {
		_ = enc.WriteField(bomb)
	}
	return buf.Bytes()
}

// TestFaultIdleConnection: with proxy.max_connection_idle, a connection
// without calls is sent a GOAWAY and closed, freeing its slot; its client
// reconnects on its next call.
func TestFaultIdleConnection(t *testing.T) {
	be := startFaultBackend(t, 0, 0)
	env := startFaultProxy(t, be.addr, func(c *proxy.Config) { c.MaxConnectionIdle = 300 * time.Millisecond })
	ctx := faultContext(t)
	cc := dial(t, env.addr)
	if err := echoFault(ctx, cc); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testwait.For(ctx, t, "the idle connection to be closed", func() bool { return env.server.Connections() == 0 })
	t.Logf("idle connection closed %v after its last call (max_connection_idle 300ms)", time.Since(start).Round(time.Millisecond))
	if err := echoFault(ctx, cc); err != nil {
		t.Fatalf("the client's next call: %v", err)
	}
}
