package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/quaestor-go/quaestor/internal/syncbuf"
	"github.com/quaestor-go/quaestor/internal/testwait"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// The client-fault tests: hostile or broken clients must neither take the
// proxy down nor starve other clients. Each runs short in make test and
// heavier with CHAOS=1 (make chaos).

const faultService = "quaestor.test.Fault"

// chaos reports whether the long versions run.
func chaos() bool { return os.Getenv("CHAOS") != "" }

// scale returns short, or long under CHAOS.
func scale(short, long int) int {
	if chaos() {
		return long
	}
	return short
}

// faultContext bounds a fault test: 30s, or 5 minutes under CHAOS.
func faultContext(t *testing.T) context.Context {
	d := 30 * time.Second
	if chaos() {
		d = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// faultBackend serves faultService's methods, as a real gRPC server:
// Echo answers its request; Flood answers any request with floodCount
// messages of floodSize bytes; Hold blocks until released or cancelled.
type faultBackend struct {
	addr                  string
	floodSize, floodCount int

	sent      atomic.Int64  // bytes Flood's SendMsg has returned for
	calls     atomic.Int64  // calls of any method
	holding   atomic.Int64  // Hold calls started
	cancelled atomic.Int64  // Hold calls that saw their context end
	release   chan struct{} // each receive ends one Hold call
}

func startFaultBackend(t *testing.T, floodSize, floodCount int) *faultBackend {
	t.Helper()
	b := &faultBackend{floodSize: floodSize, floodCount: floodCount, release: make(chan struct{})}
	b.addr = startRawBackend(t, b.handle)
	return b
}

func (b *faultBackend) handle(_ any, ss grpc.ServerStream) error {
	b.calls.Add(1)
	method, _ := grpc.MethodFromServerStream(ss)
	switch method {
	case "/" + faultService + "/Echo":
		req := new(wrapperspb.BytesValue)
		if err := ss.RecvMsg(req); err != nil {
			return err
		}
		return ss.SendMsg(req)
	case "/" + faultService + "/Flood":
		msg := &wrapperspb.BytesValue{Value: make([]byte, b.floodSize)}
		for range b.floodCount {
			if err := ss.SendMsg(msg); err != nil {
				return err
			}
			b.sent.Add(int64(b.floodSize))
		}
		return nil
	case "/" + faultService + "/Hold":
		b.holding.Add(1)
		select {
		case <-ss.Context().Done():
			b.cancelled.Add(1)
			return ss.Context().Err()
		case <-b.release:
			return nil
		}
	}
	return status.Errorf(codes.Unimplemented, "no method %s", method)
}

type faultEnv struct {
	addr   string
	server *proxy.Server
	log    *syncbuf.Buffer
}

// startFaultProxy serves a proxy routing faultService to addr, with the
// default configuration changed by configure.
func startFaultProxy(t *testing.T, addr string, configure func(*proxy.Config)) *faultEnv {
	t.Helper()
	cfg := proxy.DefaultConfig()
	if configure != nil {
		configure(&cfg)
	}
	table := routing.NewTable()
	if err := routing.LoadStatic(table, []routing.ServiceConfig{{Name: faultService, Endpoints: []string{addr}}}); err != nil {
		t.Fatal(err)
	}
	router := newTestRouter(t, routing.Options{
		Table:       table,
		DialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20))},
	})
	env := &faultEnv{log: new(syncbuf.Buffer)}
	env.addr, env.server = serveProxy(t, proxy.Options{Config: cfg, Router: router,
		Logger: slog.New(slog.NewTextHandler(env.log, nil))})
	return env
}

var bidi = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// echo makes one Echo call through cc.
func echoFault(ctx context.Context, cc grpc.ClientConnInterface, opts ...grpc.CallOption) error {
	req := &wrapperspb.BytesValue{Value: []byte("ping")}
	resp := new(wrapperspb.BytesValue)
	if err := cc.Invoke(ctx, "/"+faultService+"/Echo", req, resp, opts...); err != nil {
		return err
	}
	if !bytes.Equal(resp.GetValue(), req.GetValue()) {
		return errors.New("echo answered another payload")
	}
	return nil
}

// mustServeOthers checks that a well-behaved client still gets answers.
func mustServeOthers(ctx context.Context, t *testing.T, addr string) {
	t.Helper()
	cc := dial(t, addr)
	for range 5 {
		if err := echoFault(ctx, cc); err != nil {
			t.Fatalf("a well-behaved client's call failed: %v", err)
		}
	}
}

// waitStalled waits until counter has stopped moving: unchanged over a
// second of polls. Flow control stopping the counter is the condition; a
// slow machine can only make it look stalled earlier, which lowers the
// figure the test then bounds, never raises it.
func waitStalled(ctx context.Context, t *testing.T, counter *atomic.Int64) int64 {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last, same := int64(-1), 0
	for same < 20 {
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting for the backend's sends to stop")
		case <-tick.C:
		}
		now := counter.Load()
		if now == last && now > 0 {
			same++
		} else {
			last, same = now, 0
		}
	}
	return last
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestFaultClientNeverReads: a client opens server streams of large
// messages and never reads them. HTTP/2 flow control must stop the
// backend's sends, so that what is buffered, in the proxy and around it,
// stays bounded per stream whatever the backend offers; other clients,
// also of the same backend, are served meanwhile; and the stream was only
// paused: the client gets everything once it reads.
func TestFaultClientNeverReads(t *testing.T) {
	const size = 1 << 20
	streams, count := scale(2, 8), scale(64, 128)
	offered := int64(streams * count * size)
	be := startFaultBackend(t, size, count)
	env := startFaultProxy(t, be.addr, nil)
	ctx := faultContext(t)

	heapBefore := heapInUse()
	hostile := dial(t, env.addr)
	var held []grpc.ClientStream
	for range streams {
		s, err := hostile.NewStream(ctx, bidi, "/"+faultService+"/Flood")
		if err == nil {
			err = s.SendMsg(&wrapperspb.BytesValue{})
		}
		if err == nil {
			err = s.CloseSend()
		}
		if err != nil {
			t.Fatalf("opening a flood stream: %v", err)
		}
		held = append(held, s)
	}
	sent := waitStalled(ctx, t, &be.sent)
	heapGrowth := int64(heapInUse()) - int64(heapBefore)
	t.Logf("never-reading client, %d streams of %d × %d KiB: backend sent %.1f MiB before blocking (%.1f MiB per stream, %.0f%% of offered); heap grew %.1f MiB",
		streams, count, size>>10, float64(sent)/(1<<20), float64(sent)/float64(streams)/(1<<20), 100*float64(sent)/float64(offered), float64(heapGrowth)/(1<<20))
	if sent >= offered {
		t.Fatalf("the backend sent all %d bytes to a client that reads nothing: flow control did not hold it", offered)
	}
	// Each hop holds at most a flow-control window (at most 16 MiB where
	// gRPC's BDP estimation widens it) and a message or two in flight.
	const perStreamBound = 40 << 20
	if perStream := sent / int64(streams); perStream > perStreamBound {
		t.Errorf("%d bytes buffered per stream for a client that reads nothing, want at most %d", perStream, perStreamBound)
	}
	if heapGrowth > sent+32<<20 {
		t.Errorf("heap grew %d bytes while %d were buffered: the proxy keeps more than the windows allow", heapGrowth, sent)
	}

	mustServeOthers(ctx, t, env.addr)

	for i, s := range held {
		got := 0
		for {
			msg := new(wrapperspb.BytesValue)
			err := s.RecvMsg(msg)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("stream %d, reading at last: %v", i, err)
			}
			got += len(msg.GetValue())
		}
		if got != count*size {
			t.Errorf("stream %d: got %d bytes once reading, want %d", i, got, count*size)
		}
	}
}

// TestFaultClientVanishes: a client opens many streams, then its
// connection drops without a GOAWAY or RST_STREAM. Every call must end:
// the proxy's in-flight count returns to 0, the backend sees each call
// cancelled, and no goroutine of those calls is left.
func TestFaultClientVanishes(t *testing.T) {
	n := scale(100, 2000)
	be := startFaultBackend(t, 0, 0)
	env := startFaultProxy(t, be.addr, nil)
	ctx := faultContext(t)
	// The proxy's connection to the backend outlives the client: open it
	// first, so that the goroutine check sees only the client's calls.
	mustServeOthers(ctx, t, env.addr)
	before := goleak.IgnoreCurrent()

	conns := make(chan net.Conn, 1)
	cc, err := grpc.NewClient("passthrough:///"+env.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := new(net.Dialer).DialContext(ctx, "tcp", addr)
			if err == nil {
				conns <- c
			}
			return c, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		s, err := cc.NewStream(ctx, bidi, "/"+faultService+"/Hold")
		if err == nil {
			err = s.SendMsg(&wrapperspb.BytesValue{})
		}
		if err != nil {
			t.Fatalf("opening a stream: %v", err)
		}
	}
	testwait.For(ctx, t, "every call to reach the backend", func() bool { return be.holding.Load() == int64(n) })
	if got := env.server.InFlight(); got != int64(n) {
		t.Fatalf("in flight: %d, want %d", got, n)
	}

	start := time.Now()
	(<-conns).Close() // the client vanishes: no GOAWAY, no RST_STREAM
	testwait.For(ctx, t, "the in-flight count to return to 0", func() bool { return env.server.InFlight() == 0 })
	testwait.For(ctx, t, "the backend to see every call cancelled", func() bool { return be.cancelled.Load() == int64(n) })
	t.Logf("%d streams of a vanished client: all cancelled at the backend %v after the connection dropped", n, time.Since(start).Round(time.Millisecond))
	_ = cc.Close()
	if err := goleak.Find(before); err != nil {
		t.Errorf("goroutines left after the client vanished: %v", err)
	}
	mustServeOthers(ctx, t, env.addr)
}

// TestFaultOversizedMessage: messages above proxy.max_message_size fail
// their call with RESOURCE_EXHAUSTED, in either direction, and the
// connection goes on serving.
func TestFaultOversizedMessage(t *testing.T) {
	be := startFaultBackend(t, 2<<20, 1)
	env := startFaultProxy(t, be.addr, func(c *proxy.Config) { c.MaxMessageSize = 1 << 20 })
	ctx := faultContext(t)
	cc := dial(t, env.addr)

	resp := new(wrapperspb.BytesValue)
	err := cc.Invoke(ctx, "/"+faultService+"/Echo", &wrapperspb.BytesValue{Value: make([]byte, 2<<20)}, resp)
	// gRPC's server refuses the request before the proxy reads it.
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "larger than max") {
		t.Errorf("oversized request: %v, want RESOURCE_EXHAUSTED", err)
	}
	s, err := cc.NewStream(ctx, bidi, "/"+faultService+"/Flood")
	if err == nil {
		err = s.SendMsg(&wrapperspb.BytesValue{})
	}
	if err == nil {
		err = s.RecvMsg(resp)
	}
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "proxy.max_message_size") {
		t.Errorf("oversized response: %v, want RESOURCE_EXHAUSTED naming proxy.max_message_size", err)
	}
	if err := echoFault(ctx, cc); err != nil {
		t.Errorf("the same connection after oversized messages: %v", err)
	}
}

// TestFaultMalformedInput: garbage, protocol violations and lying gRPC
// frames, sent on raw connections. A connection the proxy cannot parse is
// closed (with a GOAWAY when HTTP/2 got that far); a bad gRPC message only
// fails its call; the proxy goes on serving others.
func TestFaultMalformedInput(t *testing.T) {
	be := startFaultBackend(t, 0, 0)
	env := startFaultProxy(t, be.addr, func(c *proxy.Config) { c.MaxMessageSize = 1 << 20 })
	ctx := faultContext(t)
	echoMethod := "/" + faultService + "/Echo"
	// Each is closed: with a GOAWAY when gRPC's transport reads a whole
	// frame it refuses, at once when its framer cannot read one.
	closes := []struct {
		name string
		send func(r *rawH2)
	}{
		{"HTTP/1.1 instead of the preface", func(r *rawH2) {
			r.write([]byte("GET / HTTP/1.1\r\nHost: quaestor\r\n\r\n"))
		}},
		{"random bytes", func(r *rawH2) {
			junk := make([]byte, 4096)
			for i := range junk {
				junk[i] = byte(i*7919 + 13)
			}
			r.write(junk)
		}},
		{"DATA on stream 0", func(r *rawH2) {
			r.preface()
			_ = r.w.WriteRawFrame(http2.FrameData, 0, 0, []byte("boom"))
		}},
		{"frame above SETTINGS_MAX_FRAME_SIZE", func(r *rawH2) {
			r.preface()
			// A HEADERS frame header stating 1 MiB, and some of it.
			r.write(append([]byte{0x10, 0, 0, byte(http2.FrameHeaders), 0x4, 0, 0, 0, 1}, make([]byte, 1024)...))
		}},
		{"undecodable HPACK", func(r *rawH2) {
			r.preface()
			_ = r.w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
		}},
		{"even stream id", func(r *rawH2) {
			r.preface()
			r.request(2, echoMethod)
		}},
		{"CONTINUATION without HEADERS", func(r *rawH2) {
			r.preface()
			_ = r.w.WriteContinuation(1, true, requestHeaders(echoMethod))
		}},
	}
	for _, tc := range closes {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, env.addr)
			tc.send(r)
			if goAway := r.waitClosed(ctx); goAway != nil {
				t.Logf("closed, GOAWAY %v %q", goAway.Code, goAway.Debug)
			} else {
				t.Logf("closed")
			}
			mustServeOthers(ctx, t, env.addr)
		})
	}

	// Lying gRPC frames fail their call with a status; the connection
	// stays, and serves a good call next.
	fails := []struct {
		name string
		send func(r *rawH2)
		want codes.Code
	}{
		{"length prefix of 2 GiB", func(r *rawH2) { r.message(1, 0, 1<<31-1, []byte("tiny"), true) }, codes.ResourceExhausted},
		{"length prefix above max_message_size", func(r *rawH2) { r.message(1, 0, 2<<20, make([]byte, 100), false) }, codes.ResourceExhausted},
		{"message shorter than its prefix", func(r *rawH2) { r.message(1, 0, 100, []byte("short"), true) }, codes.Internal},
		{"compressed flag without grpc-encoding", func(r *rawH2) { r.message(1, 1, 4, []byte("abcd"), true) }, codes.Internal},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, env.addr)
			r.preface()
			r.request(1, echoMethod)
			tc.send(r)
			trailers, ok := r.next(ctx, func(f rawFrame) bool {
				return f.StreamID == 1 && (f.Type == http2.FrameRSTStream || f.Headers["grpc-status"] != "")
			})
			if !ok {
				t.Fatal("the proxy closed the connection, want the call failed alone")
			}
			if got := trailers.Headers["grpc-status"]; got != codeString(tc.want) {
				t.Errorf("grpc-status %q (%q, frame %v %v), want %d", got, trailers.Headers["grpc-message"], trailers.Type, trailers.Code, tc.want)
			}
			t.Logf("grpc-status %s %q", trailers.Headers["grpc-status"], trailers.Headers["grpc-message"])
			// The same connection serves a good call on the next stream.
			r.request(3, echoMethod)
			req, _ := proto.Marshal(&wrapperspb.BytesValue{Value: []byte("ok")})
			r.message(3, 0, uint32(len(req)), req, true)
			done, ok := r.next(ctx, func(f rawFrame) bool { return f.StreamID == 3 && f.Headers["grpc-status"] != "" })
			if !ok || done.Headers["grpc-status"] != "0" {
				t.Errorf("a good call on the same connection: %+v (open %v), want grpc-status 0", done, ok)
			}
			mustServeOthers(ctx, t, env.addr)
		})
	}
}

func codeString(c codes.Code) string { return strconv.Itoa(int(c)) }

// TestFaultSlowClient: clients that connect and then stall (slowloris).
// One that never finishes the preface is closed after
// proxy.connection_timeout; one that goes silent (a dead client) or is
// stuck in the middle of a frame after proxy.keepalive.time + timeout,
// since it does not answer the ping.
func TestFaultSlowClient(t *testing.T) {
	be := startFaultBackend(t, 0, 0)
	const connTimeout, kaTime, kaTimeout = 300 * time.Millisecond, time.Second, 300 * time.Millisecond
	env := startFaultProxy(t, be.addr, func(c *proxy.Config) {
		c.ConnectionTimeout = connTimeout
		c.Keepalive.Time = kaTime
		c.Keepalive.Timeout = kaTimeout
	})
	ctx := faultContext(t)
	cases := []struct {
		name  string
		stall func(t *testing.T, r *rawH2)
		limit time.Duration
	}{
		{"half a preface", func(_ *testing.T, r *rawH2) {
			r.write([]byte(http2.ClientPreface[:10]))
		}, connTimeout},
		{"preface without SETTINGS", func(_ *testing.T, r *rawH2) {
			r.write([]byte(http2.ClientPreface))
		}, connTimeout},
		{"silent after the preface, answering no ping", func(_ *testing.T, r *rawH2) {
			r.preface()
		}, kaTime + kaTimeout},
		{"HEADERS frame dribbled a byte at a time", func(t *testing.T, r *rawH2) {
			r.preface()
			block := requestHeaders("/"+faultService+"/Echo", hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("a", 200)})
			frame := append([]byte{0, byte(len(block) >> 8), byte(len(block)), byte(http2.FrameHeaders), 0x4, 0, 0, 0, 1}, block...)
			dribble(t, r.conn, frame[:len(frame)-1], 100*time.Millisecond)
		}, kaTime + kaTimeout},
		{"HEADERS without its CONTINUATION", func(t *testing.T, r *rawH2) {
			r.preface()
			block := requestHeaders("/" + faultService + "/Echo")
			if err := r.w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:4], EndHeaders: false}); err != nil {
				t.Fatal(err)
			}
		}, kaTime + kaTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, env.addr)
			start := time.Now()
			tc.stall(t, r)
			goAway := r.waitClosed(ctx)
			took := r.closed.Sub(start)
			t.Logf("closed after %v (limit %v), GOAWAY %+v", took.Round(time.Millisecond), tc.limit, goAway)
			mustServeOthers(ctx, t, env.addr)
		})
	}
}

// dribble writes b to conn a byte per interval, on a goroutine that ends
// when the connection fails or the test ends.
func dribble(t *testing.T, conn net.Conn, b []byte, interval time.Duration) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := range b {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write(b[i : i+1]); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
}
