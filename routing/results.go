package routing

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"google.golang.org/grpc"
)

// The call results that passive health counts are taken by interceptors
// on the service connections, from what the caller sees: the picker puts
// the endpoint it chose in the call's context, the interceptor records the
// call's status on it when the call ends.

// pickedKey is the context key under which the picker finds a call's
// *pickedContext.
type pickedKey struct{}

// pickedContext is a call's context carrying where the picker leaves the
// endpoint it chose. It is its own context value rather than a
// context.WithValue around a separate record: one allocation per call
// instead of two, on the proxy's hottest path.
type pickedContext struct {
	context.Context
	// state is set by the picker, possibly again on a retry, and read
	// when the call ends: atomic, as retries may pick from another
	// goroutine than the one that ends the call.
	state atomic.Pointer[EndpointState]
}

// Value answers pickedKey with the pickedContext itself and hands every
// other key on. Done, Err and Deadline are the parent's, so that
// contexts derived from it attach to the parent's cancellation directly.
func (c *pickedContext) Value(key any) any {
	if _, ok := key.(pickedKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// pickedFrom returns the pickedContext in ctx, if any.
func pickedFrom(ctx context.Context) (*pickedContext, bool) {
	p, ok := ctx.Value(pickedKey{}).(*pickedContext)
	return p, ok
}

// record counts the call's result on the endpoint picked, once.
func (c *pickedContext) record(err error) {
	if state := c.state.Swap(nil); state != nil {
		state.recordResult(err)
	}
}

// recordUnary counts a unary call's result on its endpoint.
func recordUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	p := &pickedContext{Context: ctx}
	err := invoker(p, method, req, reply, cc, opts...)
	p.record(err)
	return err
}

// recordStream counts a stream's result on its endpoint when it ends.
func recordStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	// The context and the stream wrapper share one allocation.
	call := &streamCall{}
	call.picked.Context = ctx
	cs, err := streamer(&call.picked, desc, cc, method, opts...)
	if err != nil {
		call.picked.record(err)
		return nil, err
	}
	call.stream = resultStream{ClientStream: cs, picked: &call.picked}
	return &call.stream, nil
}

// streamCall is what recordStream allocates per stream.
type streamCall struct {
	picked pickedContext
	stream resultStream
}

// resultStream records the status its RecvMsg ends with.
type resultStream struct {
	grpc.ClientStream
	picked *pickedContext
}

func (s *resultStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		result := err
		if errors.Is(err, io.EOF) {
			result = nil // the stream ended well
		}
		s.picked.record(result)
	}
	return err
}
