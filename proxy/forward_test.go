package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/quaestor-go/quaestor/internal/testwait"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
)

// observation is everything a client can see of a call.
type observation struct {
	// HeaderSent is false for a trailers-only response.
	HeaderSent bool
	Header     metadata.MD
	Trailer    metadata.MD
	Responses  []*examplev1.EchoResponse
	Status     *status.Status
}

var echoDescs = map[string]*grpc.StreamDesc{
	"Unary":        {},
	"ServerStream": {ServerStreams: true},
	"ClientStream": {ClientStreams: true},
	"BidiStream":   {ServerStreams: true, ClientStreams: true},
}

// observe makes one Echo call of the given kind with reqs and records what
// the client sees.
func observe(ctx context.Context, t *testing.T, cc *grpc.ClientConn, kind string, reqs []*examplev1.EchoRequest, opts ...grpc.CallOption) observation {
	t.Helper()
	stream, err := cc.NewStream(ctx, echoDescs[kind], "/"+echoService+"/"+kind, opts...)
	if err != nil {
		return observation{Status: status.Convert(err)}
	}
	for _, req := range reqs {
		if err := stream.SendMsg(req); err != nil {
			break // the status comes from RecvMsg
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	var obs observation
	header, err := stream.Header()
	if err != nil {
		t.Fatalf("Header: %v", err)
	}
	obs.HeaderSent = header != nil
	obs.Header = withoutTransportKeys(header)
	for {
		resp := new(examplev1.EchoResponse)
		err := stream.RecvMsg(resp)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				obs.Status = status.Convert(err)
			}
			break
		}
		obs.Responses = append(obs.Responses, resp)
	}
	obs.Trailer = withoutTransportKeys(stream.Trailer())
	return obs
}

// withoutTransportKeys drops what gRPC itself sets and what the proxy adds.
func withoutTransportKeys(md metadata.MD) metadata.MD {
	out := metadata.MD{}
	for k, v := range md {
		if k == "content-type" || k == "x-forwarded-for" {
			continue
		}
		out[k] = v
	}
	return out
}

func cmpObservation(t *testing.T, direct, proxied observation) {
	t.Helper()
	if diff := cmp.Diff(direct, proxied, protocmp.Transform(),
		cmp.Comparer(func(a, b *status.Status) bool {
			return cmp.Equal(a.Proto(), b.Proto(), protocmp.Transform())
		})); diff != "" {
		t.Errorf("through the proxy the client sees another call (-direct +proxied):\n%s", diff)
	}
}

// TestTransparent runs each call directly and through the proxy and
// expects the client to see the same: headers, messages, trailers, status
// and details.
func TestTransparent(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	direct := dial(t, be.addr)

	fail := &examplev1.EchoRequest{ErrorCode: int32(codes.FailedPrecondition), ErrorMessage: "asked to fail"}
	tests := []struct {
		name string
		kind string
		md   metadata.MD
		reqs []*examplev1.EchoRequest
		opts []grpc.CallOption
	}{
		{name: "unary", kind: "Unary", reqs: []*examplev1.EchoRequest{{Payload: []byte("hello")}}},
		{name: "unary metadata", kind: "Unary",
			md:   metadata.Pairs("x-request-id", "r1", "x-multi", "a", "x-multi", "b", "x-blob-bin", string([]byte{0, 1, 2})),
			reqs: []*examplev1.EchoRequest{{Payload: []byte("hello")}}},
		{name: "unary gzip", kind: "Unary", reqs: []*examplev1.EchoRequest{{Payload: bytes.Repeat([]byte("z"), 4096)}},
			opts: []grpc.CallOption{grpc.UseCompressor(gzip.Name)}},
		{name: "unary status with details", kind: "Unary", reqs: []*examplev1.EchoRequest{fail}},
		{name: "unary headers then status", kind: "Unary",
			reqs: []*examplev1.EchoRequest{{SendHeadersFirst: true, ErrorCode: int32(codes.Aborted), ErrorMessage: "after headers"}}},
		{name: "server stream", kind: "ServerStream", reqs: []*examplev1.EchoRequest{{ResponseSize: 100, ResponseCount: 5}}},
		{name: "server stream error", kind: "ServerStream", reqs: []*examplev1.EchoRequest{fail}},
		{name: "client stream", kind: "ClientStream",
			reqs: []*examplev1.EchoRequest{{Payload: []byte("a")}, {Payload: []byte("bb")}, {Payload: []byte("ccc")}}},
		{name: "client stream empty", kind: "ClientStream"},
		{name: "bidi", kind: "BidiStream",
			reqs: []*examplev1.EchoRequest{{Payload: []byte("a")}, {Payload: []byte("b")}, {ResponseSize: 10}}},
		{name: "bidi error after messages", kind: "BidiStream",
			md:   metadata.Pairs("x-request-id", "r2"),
			reqs: []*examplev1.EchoRequest{{Payload: []byte("a")}, {Payload: []byte("b")}, fail}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(testContext(t), tt.md)
			want := observe(ctx, t, direct, tt.kind, tt.reqs, tt.opts...)
			got := observe(ctx, t, env.conn, tt.kind, tt.reqs, tt.opts...)
			cmpObservation(t, want, got)
		})
	}
}

func TestStatusDetailsVerbatim(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	_, err := env.echo.Unary(testContext(t), &examplev1.EchoRequest{ErrorCode: int32(codes.ResourceExhausted), ErrorMessage: "quota"})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || st.Message() != "quota" {
		t.Fatalf("status = %v %q, want ResourceExhausted %q", st.Code(), st.Message(), "quota")
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			info = ei
		}
	}
	if info == nil || info.GetMetadata()["server"] != "b1" {
		t.Fatalf("details = %v, want the backend's ErrorInfo", st.Details())
	}
}

// TestTrailersOnly checks that a backend's trailers-only response reaches
// the client trailers-only, with its trailer metadata.
func TestTrailersOnly(t *testing.T) {
	addr := startRawBackend(t, func(_ any, ss grpc.ServerStream) error {
		ss.SetTrailer(metadata.Pairs("x-reason", "nope"))
		return status.Error(codes.PermissionDenied, "not yours")
	})
	env := startProxy(t, map[string][]string{echoService: {addr}})
	got := observe(testContext(t), t, env.conn, "Unary", []*examplev1.EchoRequest{{}})
	want := observation{
		HeaderSent: false,
		Header:     metadata.MD{},
		Trailer:    metadata.Pairs("x-reason", "nope"),
		Status:     status.New(codes.PermissionDenied, "not yours"),
	}
	cmpObservation(t, want, got)
}

// TestHeadersBeforeMessages checks that headers reach the client while the
// backend has not sent a message yet.
func TestHeadersBeforeMessages(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	stream, err := env.echo.ServerStream(metadata.AppendToOutgoingContext(ctx, "x-early", "yes"),
		&examplev1.EchoRequest{SendHeadersFirst: true, Delay: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// The backend waits an hour before its first message: Header returns
	// only because the proxy forwarded the headers on their own.
	header, err := stream.Header()
	if err != nil {
		t.Fatal(err)
	}
	if got := header.Get("x-early"); len(got) != 1 || got[0] != "yes" {
		t.Errorf("header x-early = %q, want [yes]; header %v", got, header)
	}
	if got := header.Get("x-echo-server"); len(got) != 1 || got[0] != "b1" {
		t.Errorf("header x-echo-server = %q, want [b1]", got)
	}
}

func TestForwardedFor(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	var header metadata.MD
	ctx := metadata.AppendToOutgoingContext(testContext(t), "x-forwarded-for", "192.0.2.7")
	if _, err := env.echo.Unary(ctx, &examplev1.EchoRequest{}, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"192.0.2.7", "127.0.0.1"}, header.Get("x-forwarded-for")); diff != "" {
		t.Errorf("x-forwarded-for seen by the backend (-want +got):\n%s", diff)
	}
}

func TestDeadlineExceeded(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
	defer cancel()
	_, err := env.echo.Unary(ctx, &examplev1.EchoRequest{Delay: durationpb.New(time.Hour)})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	// The deadline travelled to the backend, which gave up waiting.
	testwait.For(testContext(t), t, "the backend to see the deadline", func() bool { return be.echo.Canceled() == 1 })
}

func TestClientCancelReachesBackend(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	ctx, cancel := context.WithCancel(testContext(t))
	stream, err := env.echo.BidiStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&examplev1.EchoRequest{Payload: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&examplev1.EchoRequest{Delay: durationpb.New(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	testwait.For(testContext(t), t, "the call to wait in the backend", func() bool { return be.echo.InFlight() == 1 })
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after cancel: %v, want Canceled", err)
	}
	testwait.For(testContext(t), t, "the backend to see the cancellation", func() bool {
		return be.echo.Canceled() == 1 && be.echo.InFlight() == 0
	})
	testwait.For(testContext(t), t, "the proxy to finish the call", func() bool { return env.server.InFlight() == 0 })
}

func TestBackendKilledMidStream(t *testing.T) {
	addr, proc := startBackendProcess(t)
	env := startProxy(t, map[string][]string{echoService: {addr}})
	ctx := testContext(t)
	stream, err := env.echo.ServerStream(ctx, &examplev1.EchoRequest{
		ResponseCount: 1000, ResponseSize: 10, Delay: durationpb.New(50 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first message: %v", err)
	}
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("stream ended with %v, want Unavailable", err)
		}
		break
	}
}

func TestHalfClose(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	ctx := testContext(t)
	stream, err := env.echo.BidiStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The client half-closes first and still receives every answer.
	for i := range 3 {
		if err := stream.Send(&examplev1.EchoRequest{Payload: []byte{byte(i)}, Delay: durationpb.New(20 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if resp.GetSequence() != int32(i+1) {
			t.Fatalf("response %d has sequence %d", i, resp.GetSequence())
		}
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last answer: %v, want io.EOF", err)
	}

	// The backend ends a server stream while the client never half-closes
	// (server streaming ends by the server alone).
	ss, err := env.echo.ServerStream(ctx, &examplev1.EchoRequest{ResponseCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for {
		if _, err := ss.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		n++
	}
	if n != 2 {
		t.Fatalf("got %d messages, want 2", n)
	}
}

func TestLargeMessage(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	payload := bytes.Repeat([]byte{0xab}, 16<<20)
	resp, err := env.echo.Unary(testContext(t), &examplev1.EchoRequest{Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp.GetPayload(), payload) {
		t.Fatalf("16 MiB payload came back with %d bytes, not equal", len(resp.GetPayload()))
	}
}

func TestMessageLimit(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}}, func(c *proxy.Config) { c.MaxMessageSize = 1 << 20 })
	ctx := testContext(t)

	// gRPC's server refuses an oversized request itself, before the proxy
	// reads it, with the standard message naming both sizes.
	_, err := env.echo.Unary(ctx, &examplev1.EchoRequest{Payload: make([]byte, 2<<20)})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "larger than max (2097157 vs. 1048576)") {
		t.Errorf("oversized request: %v, want ResourceExhausted naming the sizes", err)
	}
	_, err = env.echo.Unary(ctx, &examplev1.EchoRequest{ResponseSize: 2 << 20})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "response message from the backend larger than proxy.max_message_size (1048576 bytes)") {
		t.Errorf("oversized response: %v, want ResourceExhausted naming proxy.max_message_size", err)
	}
	if _, err := env.echo.Unary(ctx, &examplev1.EchoRequest{ResponseSize: 1000}); err != nil {
		t.Errorf("a small call after the oversized ones: %v", err)
	}
}

func TestConcurrentStreams(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	ctx := testContext(t)
	const streams = 2000
	// Every stream is opened and answers once before any closes, so all
	// of them are in flight through the proxy at the same time.
	var opened, wg sync.WaitGroup
	release := make(chan struct{})
	errs := make(chan error, streams)
	opened.Add(streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream, err := env.echo.BidiStream(ctx)
			if err == nil {
				err = stream.Send(&examplev1.EchoRequest{Payload: []byte{byte(i)}})
			}
			if err == nil {
				_, err = stream.Recv()
			}
			opened.Done()
			if err != nil {
				errs <- err
				return
			}
			<-release
			if err := stream.CloseSend(); err != nil {
				errs <- err
				return
			}
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				errs <- err
			}
		}()
	}
	opened.Wait()
	if got := env.server.InFlight(); got != streams && len(errs) == 0 {
		t.Errorf("in flight through the proxy: %d, want %d", got, streams)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("stream failed: %v", err)
	}
}

func TestSpreadsOverBackends(t *testing.T) {
	names := []string{"b1", "b2", "b3"}
	var addrs []string
	for _, n := range names {
		addrs = append(addrs, startBackend(t, n).addr)
	}
	env := startProxy(t, map[string][]string{echoService: addrs})
	ctx := testContext(t)
	// Wait until every backend is connected, so that round robin has all
	// three to choose from.
	seen := map[string]int{}
	testwait.For(ctx, t, "calls to reach every backend", func() bool {
		resp, err := env.echo.Unary(ctx, &examplev1.EchoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		seen[resp.GetServer()]++
		return len(seen) == 3
	})
	clear(seen)
	const calls = 300
	for range calls {
		resp, err := env.echo.Unary(ctx, &examplev1.EchoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		seen[resp.GetServer()]++
	}
	want := map[string]int{"b1": calls / 3, "b2": calls / 3, "b3": calls / 3}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("calls per backend (-want +got):\n%s", diff)
	}
}

func TestUnknownService(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	err := env.conn.Invoke(testContext(t), "/nosuch.v1.Service/Method", &examplev1.EchoRequest{}, &examplev1.EchoResponse{})
	st := status.Convert(err)
	if st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), `unknown service "nosuch.v1.Service"`) {
		t.Fatalf("err = %v, want Unimplemented naming the service", err)
	}
}

func TestServiceWithoutEndpoints(t *testing.T) {
	env := startProxy(t, map[string][]string{echoService: nil})
	_, err := env.echo.Unary(testContext(t), &examplev1.EchoRequest{})
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "has no endpoints") {
		t.Fatalf("err = %v, want Unavailable saying the service has no endpoints", err)
	}
}

func TestHealth(t *testing.T) {
	env := startProxy(t, nil)
	client := healthpb.NewHealthClient(env.conn)
	resp, err := client.Check(testContext(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("proxy health = %v, want SERVING", resp.GetStatus())
	}
	_, err = client.Check(testContext(t), &healthpb.HealthCheckRequest{Service: "nosuch"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("health of an unknown service: %v, want NotFound", err)
	}
}

// TestDrain checks that a drain turns health NOT_SERVING, refuses new
// calls and lets the call in flight finish.
func TestDrain(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	ctx := testContext(t)

	watch, err := healthpb.NewHealthClient(env.conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before drain: %v, %v", resp, err)
	}
	stream, err := env.echo.BidiStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&examplev1.EchoRequest{Payload: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}

	drained := make(chan error, 1)
	go func() { drained <- env.server.Drain(ctx) }()

	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health during drain: %v, %v; want NOT_SERVING", resp, err)
	}
	// New connections are refused (once the listener is closed) while the
	// stream goes on.
	testwait.For(ctx, t, "new calls to be refused", func() bool {
		cc := dial(t, env.addr)
		defer cc.Close()
		_, err := examplev1.NewEchoClient(cc).Unary(ctx, &examplev1.EchoRequest{})
		return status.Code(err) == codes.Unavailable
	})
	if err := stream.Send(&examplev1.EchoRequest{Payload: []byte("during")}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || string(resp.GetPayload()) != "during" {
		t.Fatalf("in-flight stream during drain: %v, %v", resp, err)
	}
	select {
	case err := <-drained:
		t.Fatalf("drain returned (%v) with a stream in flight", err)
	default:
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("end of the drained stream: %v, want io.EOF", err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
}

func TestDrainTimeoutCancelsCalls(t *testing.T) {
	be := startBackend(t, "b1")
	env := startProxy(t, map[string][]string{echoService: {be.addr}})
	ctx := testContext(t)
	stream, err := env.echo.ServerStream(ctx, &examplev1.EchoRequest{SendHeadersFirst: true, Delay: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	drainCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := env.server.Drain(drainCtx); err == nil || !strings.Contains(err.Error(), "1 calls in flight were cancelled") {
		t.Errorf("drain: %v, want a timeout naming the cut call", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
		t.Errorf("cut stream ended with %v", err)
	}
	testwait.For(ctx, t, "the backend to see the cancellation", func() bool { return be.echo.Canceled() == 1 })
}
