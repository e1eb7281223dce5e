package echo

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// Unary answers req with one response, sequence 1.
func (s *Server) Unary(ctx context.Context, req *examplev1.EchoRequest) (*examplev1.EchoResponse, error) {
	s.begin()
	defer s.end()
	header, trailer := s.replyMetadata(ctx)
	if err := grpc.SetTrailer(ctx, trailer); err != nil {
		return nil, s.streamError(ctx, err)
	}
	if err := grpc.SetHeader(ctx, header); err != nil {
		return nil, s.streamError(ctx, err)
	}
	if req.GetSendHeadersFirst() {
		if err := grpc.SendHeader(ctx, nil); err != nil {
			return nil, s.streamError(ctx, err)
		}
	}
	return s.answer(ctx, req, 1)
}

// ServerStream answers req with response_count responses (1 when not
// positive), sequence 1 to n, each after the delay.
func (s *Server) ServerStream(req *examplev1.EchoRequest, stream grpc.ServerStreamingServer[examplev1.EchoResponse]) error {
	s.begin()
	defer s.end()
	ctx := stream.Context()
	if err := s.setStreamMetadata(stream); err != nil {
		return err
	}
	early := earlyHeaders{stream: stream}
	if err := early.sendIfAsked(s, req.GetSendHeadersFirst()); err != nil {
		return err
	}
	n := max(req.GetResponseCount(), 1)
	for seq := int32(1); seq <= n; seq++ {
		resp, err := s.answer(ctx, req, seq)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return s.streamError(ctx, err)
		}
	}
	return nil
}

// ClientStream reads every request and, once the client half-closes,
// answers the last one with the number of requests and payload bytes read.
// A request asking for an error ends the call when it is read.
func (s *Server) ClientStream(stream grpc.ClientStreamingServer[examplev1.EchoRequest, examplev1.EchoResponse]) error {
	s.begin()
	defer s.end()
	ctx := stream.Context()
	if err := s.setStreamMetadata(stream); err != nil {
		return err
	}
	early := earlyHeaders{stream: stream}
	var (
		last  *examplev1.EchoRequest
		count int32
		bytes int64
	)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s.streamError(ctx, err)
		}
		last = req
		count++
		bytes += int64(len(req.GetPayload()))
		if err := early.sendIfAsked(s, req.GetSendHeadersFirst()); err != nil {
			return err
		}
		if req.GetErrorCode() != 0 {
			_, err := s.answer(ctx, req, 1)
			return err
		}
	}
	// With no request at all, last is nil and answers like an empty one.
	resp, err := s.answer(ctx, last, 1)
	if err != nil {
		return err
	}
	resp.RequestCount = count
	resp.RequestBytes = bytes
	if err := stream.SendAndClose(resp); err != nil {
		return s.streamError(ctx, err)
	}
	return nil
}

// BidiStream answers each request as it arrives, sequence counting up from
// 1, and returns when the client half-closes.
func (s *Server) BidiStream(stream grpc.BidiStreamingServer[examplev1.EchoRequest, examplev1.EchoResponse]) error {
	s.begin()
	defer s.end()
	ctx := stream.Context()
	if err := s.setStreamMetadata(stream); err != nil {
		return err
	}
	early := earlyHeaders{stream: stream}
	for seq := int32(1); ; seq++ {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return s.streamError(ctx, err)
		}
		if err := early.sendIfAsked(s, req.GetSendHeadersFirst()); err != nil {
			return err
		}
		resp, err := s.answer(ctx, req, seq)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return s.streamError(ctx, err)
		}
		early.sent = true // the first response carried the headers
	}
}
