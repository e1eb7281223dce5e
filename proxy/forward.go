package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// forwardedStreamDesc describes every forwarded call as a bidi stream: the
// engine does not need to know the call kind, it copies messages both ways
// until each side ends.
var forwardedStreamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// forwarder is the engine: a grpc.StreamHandler that copies one call
// between the client's server stream and a backend's client stream.
type forwarder struct {
	director       Director
	codec          frameCodec
	maxMessageSize int
	accessLog      bool
	logger         *slog.Logger
	inFlight       atomic.Int64

	// callOpts are the options of every backend call, made once: each
	// option is an allocation, and none holds per-call state.
	callOptsOnce sync.Once
	callOpts     []grpc.CallOption
}

// callOptions returns the options of a backend call.
func (f *forwarder) callOptions() []grpc.CallOption {
	f.callOptsOnce.Do(func() {
		f.callOpts = []grpc.CallOption{
			grpc.ForceCodecV2(f.codec),
			grpc.MaxCallRecvMsgSize(f.maxMessageSize),
			grpc.MaxCallSendMsgSize(f.maxMessageSize),
		}
	})
	return f.callOpts
}

// callLog collects what the access log says of a call.
type callLog struct {
	backend           peer.Peer
	bytesIn, bytesOut atomic.Int64
}

// handle is installed as the server's UnknownServiceHandler.
func (f *forwarder) handle(_ any, ss grpc.ServerStream) error {
	fullMethod, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "quaestor: server stream has no method")
	}
	if !f.accessLog {
		return f.forward(ss, fullMethod, nil)
	}
	start := time.Now()
	call := new(callLog)
	err := f.forward(ss, fullMethod, call)
	backend := "-"
	if call.backend.Addr != nil {
		backend = call.backend.Addr.String()
	}
	client := "-"
	if p, ok := peer.FromContext(ss.Context()); ok && p.Addr != nil {
		client = p.Addr.String()
	}
	f.logger.Info("access", "method", fullMethod, "client", client, "backend", backend,
		"code", status.Code(err).String(), "duration", time.Since(start),
		"bytes_in", call.bytesIn.Load(), "bytes_out", call.bytesOut.Load())
	return err
}

// forward copies one call to the backend the director chooses; call, when
// not nil, collects the access log's figures.
func (f *forwarder) forward(ss grpc.ServerStream, fullMethod string, call *callLog) error {
	conn, err := f.director(ss.Context(), fullMethod)
	if err != nil {
		return err
	}
	f.inFlight.Add(1)
	defer f.inFlight.Add(-1)

	// The backend call lives in the client's context, so the client's
	// deadline and cancellation reach it. gRPC cancels that context when
	// the client's stream ends for any reason: when this handler returns,
	// when the client resets the stream, and when ss.RecvMsg fails (it
	// writes the status before returning), so the backend call needs no
	// cancel of its own (which would cost a context and a cancel func per
	// call).
	ctx := metadata.NewOutgoingContext(ss.Context(), forwardMetadata(ss.Context()))
	callOpts := f.callOptions()
	if call != nil {
		callOpts = append(slices.Clip(callOpts), grpc.Peer(&call.backend))
	}
	cs, err := conn.NewStream(ctx, forwardedStreamDesc, fullMethod, callOpts...)
	if err != nil {
		return err
	}

	// The request side runs on its own goroutine, owned by this call. It is
	// waited for only once the client's stream has ended: before, it may be
	// blocked in ss.RecvMsg, which returns only once this handler has
	// returned and gRPC has ended the server stream; it then ends at once.
	sides := new(callSides)
	sides.done.Add(1)
	go func() {
		defer sides.done.Done()
		if err := f.forwardRequests(ss, cs, &sides.request, call); err != nil {
			if status.Code(err) == codes.ResourceExhausted {
				f.logger.Warn("proxy: request refused: a message is larger than proxy.max_message_size",
					"method", fullMethod, "max_message_size", f.maxMessageSize, "error", err)
			}
			sides.err = err
		}
	}()
	err = f.forwardResponses(cs, ss, &sides.response, call)
	if ss.Context().Err() != nil {
		// The client's stream has ended, so the request side is ending
		// too; when it failed, its error is the call's status (gRPC has
		// already sent it to the client): the response side only saw the
		// backend call cancelled.
		sides.done.Wait()
		if sides.err != nil {
			return sides.err
		}
	}
	return err
}

// callSides is what the two sides of a call share, in one allocation:
// each side's message would escape to the heap on its own.
type callSides struct {
	// done is the request side's end, err its error, set before done.
	done sync.WaitGroup
	err  error
	// request and response are the messages in transit each way.
	request, response frame
}

// forwardRequests copies client messages to the backend until the client
// half-closes, then half-closes the backend stream. It returns an error
// only when the call must end because of the client side: the response
// side ends it otherwise.
func (f *forwarder) forwardRequests(ss grpc.ServerStream, cs grpc.ClientStream, msg *frame, call *callLog) error {
	for {
		if err := ss.RecvMsg(msg); err != nil {
			if errors.Is(err, io.EOF) {
				// CloseSend fails only when the stream is already done, which
				// the response side reports.
				_ = cs.CloseSend()
				return nil
			}
			// The client went away, or sent a message over the limit
			// (gRPC has already answered it).
			return err
		}
		if call != nil {
			call.bytesIn.Add(int64(msg.data.Len()))
		}
		if err := cs.SendMsg(msg); err != nil {
			// The backend stream is over (io.EOF) or broken; the real
			// status comes out of RecvMsg on the response side.
			msg.free()
			return nil
		}
	}
}

// forwardResponses sends the backend's headers to the client as soon as
// they arrive, then its messages, and returns its status with its trailers
// set on the client stream.
func (f *forwarder) forwardResponses(cs grpc.ClientStream, ss grpc.ServerStream, msg *frame, call *callLog) error {
	// Header blocks until the backend sends headers or ends the call. It
	// returns nil for a trailers-only response: sending no headers keeps it
	// trailers-only for the client too.
	header, _ := cs.Header()
	if header != nil {
		if err := ss.SendHeader(header); err != nil {
			return err
		}
	}
	for {
		if err := cs.RecvMsg(msg); err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return f.responseError(err)
		}
		if call != nil {
			call.bytesOut.Add(int64(msg.data.Len()))
		}
		if err := ss.SendMsg(msg); err != nil {
			msg.free()
			return err
		}
	}
}

// responseError names the proxy's limit when the proxy itself refused a
// backend message as too large, and passes every backend status verbatim.
// A backend's own "larger than max" status cannot name the proxy's limit:
// requests above it never reach the backend.
func (f *forwarder) responseError(err error) error {
	st := status.Convert(err)
	msg := st.Message()
	if st.Code() == codes.ResourceExhausted && strings.Contains(msg, "larger than max") &&
		strings.Contains(msg, strconv.Itoa(f.maxMessageSize)) {
		return status.Errorf(codes.ResourceExhausted,
			"quaestor: response message from the backend larger than proxy.max_message_size (%d bytes): %s", f.maxMessageSize, msg)
	}
	return err
}

// forwardMetadata returns the request metadata for the backend: the
// client's, less the pseudo-headers and hop-by-hop headers, with the
// client's address appended to x-forwarded-for.
func forwardMetadata(ctx context.Context) metadata.MD {
	// FromIncomingContext returns a copy, keys and values, that this call
	// owns: it is edited in place rather than copied again.
	md, _ := metadata.FromIncomingContext(ctx)
	if md == nil {
		md = make(metadata.MD, 1)
	}
	for key := range md {
		if !forwardable(key) {
			delete(md, key)
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		md["x-forwarded-for"] = append(md["x-forwarded-for"], clientHost(p.Addr))
	}
	return md
}

// clientHost is the host part of a client's address, as x-forwarded-for
// gives it.
func clientHost(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok && tcp.Zone == "" {
		return tcp.IP.String() // one allocation fewer than String + SplitHostPort
	}
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host
}

// forwardable reports whether a request metadata key goes to the backend.
// gRPC sets the transport's own headers on the backend call.
func forwardable(key string) bool {
	switch key {
	case "content-type", "user-agent", "te", "connection", "keep-alive",
		"proxy-connection", "transfer-encoding", "upgrade":
		return false
	case "grpc-trace-bin", "grpc-tags-bin":
		return true
	}
	return !strings.HasPrefix(key, ":") && !strings.HasPrefix(key, "grpc-")
}
