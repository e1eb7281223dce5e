package proxy

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// frame is one gRPC message as it arrived, undecoded.
type frame struct {
	data mem.BufferSlice
}

// free releases buffers still held, when the frame was not handed on.
func (f *frame) free() {
	f.data.Free()
	f.data = nil
}

// frameCodec passes frames through without copying and leaves every other
// message to the proto codec, so that the proxy's own services (health,
// reflection) work on the same server.
type frameCodec struct {
	proto encoding.CodecV2
}

func newFrameCodec() frameCodec {
	return frameCodec{proto: encoding.GetCodecV2(proto.Name)}
}

var _ encoding.CodecV2 = frameCodec{}

// Marshal hands the frame's buffers to gRPC, which frees them once written.
func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		data := f.data
		f.data = nil
		return data, nil
	}
	return c.proto.Marshal(v)
}

// Unmarshal keeps a reference to the received buffers: gRPC frees its own
// reference when Unmarshal returns.
func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frame); ok {
		data.Ref()
		f.data = data
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

// Name is "proto" so the content-type seen by both sides is unchanged.
func (frameCodec) Name() string { return proto.Name }
