package echo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	"github.com/quaestor-go/quaestor/internal/testwait"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every test; nothing in these tests should come close.
const testTimeout = 10 * time.Second

// The call kinds, named after the Echo methods.
const (
	unary        = "Unary"
	serverStream = "ServerStream"
	clientStream = "ClientStream"
	bidiStream   = "BidiStream"
)

var allKinds = []string{unary, serverStream, clientStream, bidiStream}

// startEcho serves an echo.Server on loopback and returns it with a client
// connection to it; both are stopped when the test ends.
func startEcho(t *testing.T, opts echo.Options) (*echo.Server, *grpc.ClientConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	srv := echo.New(opts)
	gs := grpc.NewServer()
	examplev1.RegisterEchoServer(gs, srv)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := gs.Serve(lis); err != nil {
			t.Errorf("serving: %v", err)
		}
	})
	t.Cleanup(func() {
		gs.Stop()
		wg.Wait()
	})
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dialing %s: %v", lis.Addr(), err)
	}
	t.Cleanup(func() { cc.Close() })
	return srv, cc
}

// result is what a client saw of one call.
type result struct {
	responses []*examplev1.EchoResponse
	header    metadata.MD
	trailer   metadata.MD
	err       error
}

// call makes one call of the given kind. Unary and ServerStream send only
// reqs[0]; BidiStream sends each request and receives its response before
// sending the next, so every response must come before the half-close.
func call(ctx context.Context, cc *grpc.ClientConn, kind string, reqs ...*examplev1.EchoRequest) result {
	client := examplev1.NewEchoClient(cc)
	var res result
	switch kind {
	case unary:
		resp, err := client.Unary(ctx, reqs[0], grpc.Header(&res.header), grpc.Trailer(&res.trailer))
		if err != nil {
			res.err = err
			return res
		}
		res.responses = append(res.responses, resp)
	case serverStream:
		stream, err := client.ServerStream(ctx, reqs[0])
		if err != nil {
			res.err = err
			return res
		}
		res.responses, res.err = receiveAll(stream)
		res.header, _ = stream.Header()
		res.trailer = stream.Trailer()
	case clientStream:
		stream, err := client.ClientStream(ctx)
		if err != nil {
			res.err = err
			return res
		}
		for _, req := range reqs {
			// io.EOF means the server ended the call; CloseAndRecv says why.
			if err := stream.Send(req); err != nil {
				break
			}
		}
		resp, err := stream.CloseAndRecv()
		if err == nil {
			res.responses = append(res.responses, resp)
		}
		res.err = err
		res.header, _ = stream.Header()
		res.trailer = stream.Trailer()
	case bidiStream:
		stream, err := client.BidiStream(ctx)
		if err != nil {
			res.err = err
			return res
		}
		for _, req := range reqs {
			if err := stream.Send(req); err != nil {
				// The call ended before the request went out; Recv says why.
				_, res.err = stream.Recv()
				break
			}
			resp, err := stream.Recv()
			if err != nil {
				res.err = err
				break
			}
			res.responses = append(res.responses, resp)
		}
		if res.err == nil {
			if err := stream.CloseSend(); err != nil {
				res.err = err
			} else if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				res.err = fmt.Errorf("receiving after the half-close: %v, want io.EOF", err)
			}
		}
		res.header, _ = stream.Header()
		res.trailer = stream.Trailer()
	default:
		res.err = errors.New("unknown call kind " + kind)
	}
	return res
}

func receiveAll(stream grpc.ServerStreamingClient[examplev1.EchoResponse]) ([]*examplev1.EchoResponse, error) {
	var responses []*examplev1.EchoResponse
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return responses, nil
		}
		if err != nil {
			return responses, err
		}
		responses = append(responses, resp)
	}
}

func TestResponses(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		opts echo.Options
		kind string
		reqs []*examplev1.EchoRequest
		want []*examplev1.EchoResponse
	}{
		{
			name: "unary echoes the payload under the default name",
			kind: unary,
			reqs: []*examplev1.EchoRequest{{Payload: []byte("hello")}},
			want: []*examplev1.EchoResponse{{Payload: []byte("hello"), Server: echo.DefaultName, Sequence: 1}},
		},
		{
			name: "unary answers response_size bytes",
			opts: echo.Options{Name: "a"},
			kind: unary,
			reqs: []*examplev1.EchoRequest{{Payload: []byte("hello"), ResponseSize: mib}},
			want: []*examplev1.EchoResponse{{Payload: make([]byte, mib), Server: "a", Sequence: 1}},
		},
		{
			name: "unary waits the delays",
			opts: echo.Options{Name: "a", Delay: time.Millisecond},
			kind: unary,
			reqs: []*examplev1.EchoRequest{{Payload: []byte("x"), Delay: durationpb.New(time.Millisecond)}},
			want: []*examplev1.EchoResponse{{Payload: []byte("x"), Server: "a", Sequence: 1}},
		},
		{
			name: "server stream sends one response by default",
			opts: echo.Options{Name: "a"},
			kind: serverStream,
			reqs: []*examplev1.EchoRequest{{Payload: []byte("p"), ResponseCount: -3}},
			want: []*examplev1.EchoResponse{{Payload: []byte("p"), Server: "a", Sequence: 1}},
		},
		{
			name: "server stream sends response_count responses",
			opts: echo.Options{Name: "a"},
			kind: serverStream,
			reqs: []*examplev1.EchoRequest{{ResponseCount: 3, ResponseSize: 4}},
			want: []*examplev1.EchoResponse{
				{Payload: make([]byte, 4), Server: "a", Sequence: 1},
				{Payload: make([]byte, 4), Server: "a", Sequence: 2},
				{Payload: make([]byte, 4), Server: "a", Sequence: 3},
			},
		},
		{
			name: "client stream without requests",
			opts: echo.Options{Name: "a"},
			kind: clientStream,
			want: []*examplev1.EchoResponse{{Server: "a", Sequence: 1}},
		},
		{
			name: "client stream totals the requests and echoes the last",
			opts: echo.Options{Name: "a"},
			kind: clientStream,
			reqs: []*examplev1.EchoRequest{{Payload: []byte("one")}, {Payload: []byte("three")}, {Payload: []byte("two")}},
			want: []*examplev1.EchoResponse{{Payload: []byte("two"), Server: "a", Sequence: 1, RequestCount: 3, RequestBytes: 11}},
		},
		{
			name: "client stream answers the last request's response_size",
			opts: echo.Options{Name: "a"},
			kind: clientStream,
			reqs: []*examplev1.EchoRequest{{Payload: []byte("one"), ResponseSize: 1}, {Payload: []byte("two"), ResponseSize: 5}},
			want: []*examplev1.EchoResponse{{Payload: make([]byte, 5), Server: "a", Sequence: 1, RequestCount: 2, RequestBytes: 6}},
		},
		{
			name: "bidi stream answers each request as it arrives",
			opts: echo.Options{Name: "a"},
			kind: bidiStream,
			reqs: []*examplev1.EchoRequest{{Payload: []byte("one")}, {ResponseSize: mib}, {Payload: []byte("three")}},
			want: []*examplev1.EchoResponse{
				{Payload: []byte("one"), Server: "a", Sequence: 1},
				{Payload: make([]byte, mib), Server: "a", Sequence: 2},
				{Payload: []byte("three"), Server: "a", Sequence: 3},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			srv, cc := startEcho(t, tt.opts)

			got := call(ctx, cc, tt.kind, tt.reqs...)
			if got.err != nil {
				t.Fatalf("%s: %v", tt.kind, got.err)
			}
			if diff := cmp.Diff(tt.want, got.responses, protocmp.Transform(), cmp.Comparer(bytes.Equal)); diff != "" {
				t.Errorf("%s responses (-want +got):\n%s", tt.kind, diff)
			}
			// The handler has returned before the client sees the call end.
			counters := [3]int64{srv.Calls(), srv.InFlight(), srv.Canceled()}
			if diff := cmp.Diff([3]int64{1, 0, 0}, counters); diff != "" {
				t.Errorf("[Calls InFlight Canceled] (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestedError(t *testing.T) {
	failing := &examplev1.EchoRequest{ErrorCode: int32(codes.Unavailable), ErrorMessage: "asked to fail", ResponseCount: 3}
	ok := &examplev1.EchoRequest{Payload: []byte("ok")}
	tests := []struct {
		name          string
		kind          string
		reqs          []*examplev1.EchoRequest
		wantResponses int
	}{
		{name: "unary", kind: unary, reqs: []*examplev1.EchoRequest{failing}},
		{name: "server stream sends no response", kind: serverStream, reqs: []*examplev1.EchoRequest{failing}},
		{name: "client stream fails when the request is read", kind: clientStream, reqs: []*examplev1.EchoRequest{ok, failing, ok}},
		{name: "bidi stream answers earlier requests", kind: bidiStream, reqs: []*examplev1.EchoRequest{ok, failing, ok}, wantResponses: 1},
	}
	want, err := status.New(codes.Unavailable, "asked to fail").WithDetails(&errdetails.ErrorInfo{
		Reason:   echo.ErrorReason,
		Domain:   echo.ErrorDomain,
		Metadata: map[string]string{"server": "failing-server"},
	})
	if err != nil {
		t.Fatalf("building the wanted status: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			srv, cc := startEcho(t, echo.Options{Name: "failing-server"})

			got := call(ctx, cc, tt.kind, tt.reqs...)
			if diff := cmp.Diff(want.Proto(), status.Convert(got.err).Proto(), protocmp.Transform()); diff != "" {
				t.Errorf("%s status (-want +got):\n%s", tt.kind, diff)
			}
			if len(got.responses) != tt.wantResponses {
				t.Errorf("%s: got %d responses before the error, want %d", tt.kind, len(got.responses), tt.wantResponses)
			}
			if got := srv.Canceled(); got != 0 {
				t.Errorf("Canceled() = %d, want 0: a requested error is no cancellation", got)
			}
		})
	}
}

// TestSendHeadersFirst asks for early headers and a delay no test waits
// out: the headers can only arrive before the test's deadline if the server
// sent them before waiting.
func TestSendHeadersFirst(t *testing.T) {
	methods := map[string]string{
		unary:        examplev1.Echo_Unary_FullMethodName,
		serverStream: examplev1.Echo_ServerStream_FullMethodName,
		clientStream: examplev1.Echo_ClientStream_FullMethodName,
		bidiStream:   examplev1.Echo_BidiStream_FullMethodName,
	}
	for _, kind := range allKinds {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			srv, cc := startEcho(t, echo.Options{Name: "early"})

			callCtx, cancelCall := context.WithCancel(ctx)
			defer cancelCall()
			// A raw stream works for every kind and, unlike a unary call,
			// shows the headers before the call ends.
			desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
			stream, err := cc.NewStream(callCtx, desc, methods[kind])
			if err != nil {
				t.Fatalf("starting %s: %v", kind, err)
			}
			req := &examplev1.EchoRequest{SendHeadersFirst: true, Delay: durationpb.New(time.Hour)}
			if err := stream.SendMsg(req); err != nil {
				t.Fatalf("sending: %v", err)
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatalf("half-closing: %v", err)
			}
			header, err := stream.Header()
			if err != nil {
				t.Fatalf("waiting for the headers: %v", err)
			}
			if diff := cmp.Diff([]string{"early"}, header.Get(echo.ServerHeader)); diff != "" {
				t.Fatalf("header %s (-want +got):\n%s", echo.ServerHeader, diff)
			}

			cancelCall()
			testwait.For(ctx, t, "the cancelled call to end", func() bool {
				return srv.Canceled() == 1 && srv.InFlight() == 0
			})
		})
	}
}

func TestMetadataEcho(t *testing.T) {
	sent := metadata.Pairs(
		"x-text", "one",
		"x-text", "two",
		"x-data-bin", string([]byte{0, 1, 254, 255}),
		"grpc-previous-rpc-attempts", "1",
	)
	wantTrailer := metadata.Pairs(
		"x-text", "one",
		"x-text", "two",
		"x-data-bin", string([]byte{0, 1, 254, 255}),
	)
	wantHeader := metadata.Join(wantTrailer, metadata.Pairs(echo.ServerHeader, "md"))
	tests := []struct {
		name string
		kind string
		req  *examplev1.EchoRequest
	}{
		{name: "unary", kind: unary, req: &examplev1.EchoRequest{}},
		{name: "unary error", kind: unary, req: &examplev1.EchoRequest{ErrorCode: int32(codes.Aborted)}},
		{name: "server stream", kind: serverStream, req: &examplev1.EchoRequest{ResponseCount: 2}},
		{name: "client stream", kind: clientStream, req: &examplev1.EchoRequest{}},
		{name: "bidi stream", kind: bidiStream, req: &examplev1.EchoRequest{}},
		{name: "bidi stream error", kind: bidiStream, req: &examplev1.EchoRequest{ErrorCode: int32(codes.Aborted)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			_, cc := startEcho(t, echo.Options{Name: "md"})

			got := call(metadata.NewOutgoingContext(ctx, sent), cc, tt.kind, tt.req)
			if wantErr := tt.req.GetErrorCode() != 0; (got.err != nil) != wantErr {
				t.Fatalf("%s: error %v, want an error: %t", tt.kind, got.err, wantErr)
			}
			if diff := cmp.Diff(wantHeader, withoutTransportKeys(got.header)); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantTrailer, withoutTransportKeys(got.trailer)); diff != "" {
				t.Errorf("trailers (-want +got):\n%s", diff)
			}
		})
	}
}

// withoutTransportKeys drops the keys gRPC itself adds to what a client
// receives, leaving those the server set.
func withoutTransportKeys(md metadata.MD) metadata.MD {
	out := md.Copy()
	delete(out, "content-type")
	delete(out, "grpc-status-details-bin")
	return out
}

func TestCancellation(t *testing.T) {
	longDelay := durationpb.New(time.Hour)
	tests := []struct {
		name string
		opts echo.Options
		kind string
		reqs []*examplev1.EchoRequest
		// deadline, when set, ends the call; otherwise the client cancels
		// it once the handler is running.
		deadline time.Duration
		wantCode codes.Code
	}{
		{
			name:     "unary request delay past the deadline",
			kind:     unary,
			reqs:     []*examplev1.EchoRequest{{Delay: longDelay}},
			deadline: 100 * time.Millisecond,
			wantCode: codes.DeadlineExceeded,
		},
		{
			name:     "unary server delay past the deadline",
			opts:     echo.Options{Delay: time.Hour},
			kind:     unary,
			reqs:     []*examplev1.EchoRequest{{}},
			deadline: 100 * time.Millisecond,
			wantCode: codes.DeadlineExceeded,
		},
		{
			name:     "server stream delay cancelled",
			kind:     serverStream,
			reqs:     []*examplev1.EchoRequest{{Delay: longDelay}},
			wantCode: codes.Canceled,
		},
		{
			name:     "client stream delay past the deadline",
			kind:     clientStream,
			reqs:     []*examplev1.EchoRequest{{Delay: longDelay}},
			deadline: 100 * time.Millisecond,
			wantCode: codes.DeadlineExceeded,
		},
		{
			name:     "bidi stream delay cancelled",
			kind:     bidiStream,
			reqs:     []*examplev1.EchoRequest{{Delay: longDelay}},
			wantCode: codes.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			srv, cc := startEcho(t, tt.opts)

			callCtx, cancelCall := context.WithCancel(ctx)
			defer cancelCall()
			if tt.deadline > 0 {
				callCtx, cancelCall = context.WithTimeout(ctx, tt.deadline)
				defer cancelCall()
			} else {
				// Every case waits an hour once the request is read, so
				// cancelling once the handler runs cancels the wait or the
				// read before it.
				var wg sync.WaitGroup
				defer wg.Wait()
				wg.Go(func() {
					if err := testwait.Poll(ctx, func() bool { return srv.InFlight() == 1 }); err != nil {
						t.Errorf("waiting for the call to start: %v", err)
					}
					cancelCall()
				})
			}

			got := call(callCtx, cc, tt.kind, tt.reqs...)
			if code := status.Code(got.err); code != tt.wantCode {
				t.Errorf("%s: %v, want code %v", tt.kind, got.err, tt.wantCode)
			}
			testwait.For(ctx, t, "the cancelled call to end", func() bool {
				return srv.Canceled() == 1 && srv.InFlight() == 0
			})
		})
	}
}

// TestCancelledReceive ends streams while their handler waits for a request.
func TestCancelledReceive(t *testing.T) {
	for _, kind := range []string{clientStream, bidiStream} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			srv, cc := startEcho(t, echo.Options{})

			callCtx, cancelCall := context.WithCancel(ctx)
			defer cancelCall()
			desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
			method := map[string]string{
				clientStream: examplev1.Echo_ClientStream_FullMethodName,
				bidiStream:   examplev1.Echo_BidiStream_FullMethodName,
			}[kind]
			stream, err := cc.NewStream(callCtx, desc, method)
			if err != nil {
				t.Fatalf("starting %s: %v", kind, err)
			}
			// The server reads a request only once it has the stream.
			if err := stream.SendMsg(&examplev1.EchoRequest{Payload: []byte("first")}); err != nil {
				t.Fatalf("sending: %v", err)
			}
			testwait.For(ctx, t, "the call to start", func() bool { return srv.InFlight() == 1 })
			cancelCall()
			testwait.For(ctx, t, "the cancelled call to end", func() bool {
				return srv.Canceled() == 1 && srv.InFlight() == 0
			})
		})
	}
}

// TestConcurrentResponseSizes has concurrent calls grow and share the
// response buffer; run with -race.
func TestConcurrentResponseSizes(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	_, cc := startEcho(t, echo.Options{})
	client := examplev1.NewEchoClient(cc)

	var wg sync.WaitGroup
	for worker := range 8 {
		wg.Go(func() {
			for i := range 20 {
				size := int32(1 + (worker*20+i)*997)
				resp, err := client.Unary(ctx, &examplev1.EchoRequest{ResponseSize: size})
				if err != nil {
					t.Errorf("size %d: %v", size, err)
					return
				}
				if got := len(resp.GetPayload()); got != int(size) {
					t.Errorf("size %d: got %d payload bytes", size, got)
				}
			}
		})
	}
	wg.Wait()
}
