package routing

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
)

// The call results that passive health counts are taken by interceptors
// on the service connections, from what the caller sees: the picker puts
// the endpoint it chose in the call's context, the interceptor records the
// call's status on it when the call ends.

// pickedKey is the context key of a call's *picked.
type pickedKey struct{}

// picked is where the picker leaves the endpoint of a call.
type picked struct {
	state *EndpointState
}

// recordUnary counts a unary call's result on its endpoint.
func recordUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	p := new(picked)
	err := invoker(context.WithValue(ctx, pickedKey{}, p), method, req, reply, cc, opts...)
	if p.state != nil {
		p.state.recordResult(err)
	}
	return err
}

// recordStream counts a stream's result on its endpoint when it ends.
func recordStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	p := new(picked)
	cs, err := streamer(context.WithValue(ctx, pickedKey{}, p), desc, cc, method, opts...)
	if err != nil {
		if p.state != nil {
			p.state.recordResult(err)
		}
		return nil, err
	}
	return &resultStream{ClientStream: cs, picked: p}, nil
}

// resultStream records the status its RecvMsg ends with.
type resultStream struct {
	grpc.ClientStream
	picked *picked
}

func (s *resultStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && s.picked.state != nil {
		result := err
		if errors.Is(err, io.EOF) {
			result = nil // the stream ended well
		}
		s.picked.state.recordResult(result)
		s.picked.state = nil // once
	}
	return err
}
