package echo

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// ServerHeader is the response header carrying the server's name.
const ServerHeader = "x-echo-server"

// replyMetadata returns the response headers and trailers for the call in
// ctx: the echoed request metadata, plus ServerHeader in the headers. Each
// is a separate map, since gRPC may merge into them.
func (s *Server) replyMetadata(ctx context.Context) (header, trailer metadata.MD) {
	in, _ := metadata.FromIncomingContext(ctx)
	header, trailer = echoedMetadata(in), echoedMetadata(in)
	header.Set(ServerHeader, s.name)
	return header, trailer
}

// echoedMetadata copies the request metadata that a server may send back:
// everything except pseudo-headers and the keys that gRPC itself owns.
func echoedMetadata(in metadata.MD) metadata.MD {
	out := make(metadata.MD, len(in)+1)
	for key, values := range in {
		if echoable(key) {
			out[key] = slices.Clone(values)
		}
	}
	return out
}

func echoable(key string) bool {
	switch {
	case strings.HasPrefix(key, ":"), strings.HasPrefix(key, "grpc-"):
		return false
	case key == "content-type", key == "user-agent", key == "te":
		return false
	}
	return true
}

// setStreamMetadata sets a stream's echoed headers and trailers; the headers
// go out with the first response or error unless sent earlier.
func (s *Server) setStreamMetadata(stream grpc.ServerStream) error {
	ctx := stream.Context()
	header, trailer := s.replyMetadata(ctx)
	stream.SetTrailer(trailer)
	if err := stream.SetHeader(header); err != nil {
		return s.streamError(ctx, err)
	}
	return nil
}

// earlyHeaders sends a stream's headers at once when a request asks for it,
// at most once, and not after a response has sent them.
type earlyHeaders struct {
	stream grpc.ServerStream
	sent   bool
}

func (h *earlyHeaders) sendIfAsked(s *Server, ask bool) error {
	if !ask || h.sent {
		return nil
	}
	h.sent = true
	if err := h.stream.SendHeader(nil); err != nil {
		return s.streamError(h.stream.Context(), err)
	}
	return nil
}
