package echo

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// DefaultName is the name a Server reports when Options.Name is empty.
const DefaultName = "echo"

// Options configures a Server.
type Options struct {
	// Name is reported in EchoResponse.server, in the "x-echo-server"
	// response header and in the ErrorInfo of requested errors. Default
	// DefaultName.
	Name string
	// Delay is waited before every answer, on top of the request's own
	// delay. Default 0.
	Delay time.Duration
}

// Server implements examplev1.EchoServer. Its methods are safe for
// concurrent use; create it with New.
type Server struct {
	examplev1.UnimplementedEchoServer

	name  string
	delay time.Duration

	calls    atomic.Int64
	canceled atomic.Int64
	inFlight atomic.Int64

	payload sharedPayload
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	return &Server{name: opts.Name, delay: opts.Delay}
}

// Calls returns the number of calls started.
func (s *Server) Calls() int64 { return s.calls.Load() }

// Canceled returns the number of calls that ended because the caller
// cancelled or the deadline passed while the handler was waiting, receiving
// or sending.
func (s *Server) Canceled() int64 { return s.canceled.Load() }

// InFlight returns the number of calls currently running.
func (s *Server) InFlight() int64 { return s.inFlight.Load() }

// begin counts a call that starts; the handler defers end.
func (s *Server) begin() {
	s.calls.Add(1)
	s.inFlight.Add(1)
}

// end counts a call that returns.
func (s *Server) end() { s.inFlight.Add(-1) }

// cancelled counts a call ended by its context and returns the status the
// handler answers with.
func (s *Server) cancelled(ctx context.Context) error {
	s.canceled.Add(1)
	return status.FromContextError(ctx.Err()).Err()
}

// streamError returns the error a handler answers with when receiving,
// sending or writing headers failed: a failure caused by the call's end
// (cancellation or deadline) is counted as such; any other passes through.
func (s *Server) streamError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return s.cancelled(ctx)
	}
	return err
}

// wait waits Options.Delay plus the request's delay, ending early when the
// call ends.
func (s *Server) wait(ctx context.Context, req *examplev1.EchoRequest) error {
	d := s.delay + req.GetDelay().AsDuration()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return s.cancelled(ctx)
	}
}

// answer waits, then returns the requested error or the response at
// position seq of its stream.
func (s *Server) answer(ctx context.Context, req *examplev1.EchoRequest, seq int32) (*examplev1.EchoResponse, error) {
	if err := s.wait(ctx, req); err != nil {
		return nil, err
	}
	if req.GetErrorCode() != 0 {
		return nil, s.requestedError(req)
	}
	return &examplev1.EchoResponse{
		Payload:  s.responsePayload(req),
		Server:   s.name,
		Sequence: seq,
	}, nil
}

// responsePayload returns response_size shared bytes, or else the request's
// payload. Neither is written to afterwards.
func (s *Server) responsePayload(req *examplev1.EchoRequest) []byte {
	if n := req.GetResponseSize(); n > 0 {
		return s.payload.bytes(int(n))
	}
	return req.GetPayload()
}

var _ examplev1.EchoServer = (*Server)(nil)
