package frames

import (
	"fmt"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// Status is how a call ended, as the client was told.
type Status struct {
	Code    codes.Code
	Message string
}

func (s Status) String() string { return fmt.Sprintf("%s: %s", s.Code, s.Message) }

// statusFields are the trailers of a response the proxy ends itself:
// trailers-only (with :status and content-type) when no headers were sent.
func statusFields(st Status, trailersOnly bool) []hpack.HeaderField {
	fields := make([]hpack.HeaderField, 0, 4)
	if trailersOnly {
		fields = append(fields,
			hpack.HeaderField{Name: ":status", Value: "200"},
			hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	}
	fields = append(fields, hpack.HeaderField{Name: "grpc-status", Value: strconv.Itoa(int(st.Code))})
	if st.Message != "" {
		fields = append(fields, hpack.HeaderField{Name: "grpc-message", Value: encodeGRPCMessage(st.Message)})
	}
	return fields
}

// encodeGRPCMessage percent-encodes a status message as the gRPC HTTP/2
// protocol asks: every byte outside printable ASCII, and '%'.
func encodeGRPCMessage(msg string) string {
	clean := true
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(msg)+16)
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// decodeGRPCMessage undoes encodeGRPCMessage, leaving bad escapes as they
// are.
func decodeGRPCMessage(msg string) string {
	for i := 0; i < len(msg); i++ {
		if msg[i] == '%' {
			goto decode
		}
	}
	return msg
decode:
	b := make([]byte, 0, len(msg))
	for i := 0; i < len(msg); i++ {
		if msg[i] == '%' && i+2 < len(msg) {
			if v, err := strconv.ParseUint(msg[i+1:i+3], 16, 8); err == nil {
				b = append(b, byte(v))
				i += 2
				continue
			}
		}
		b = append(b, msg[i])
	}
	return string(b)
}

// parseTimeout parses a grpc-timeout value: at most 8 digits and a unit.
func parseTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[v[len(v)-1]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// resetStatus is the status a client sees when a backend resets its
// stream with code, as gRPC maps reset codes.
func resetStatus(code http2.ErrCode) Status {
	c := codes.Internal
	switch code {
	case http2.ErrCodeRefusedStream:
		c = codes.Unavailable
	case http2.ErrCodeCancel:
		c = codes.Canceled
	case http2.ErrCodeEnhanceYourCalm:
		c = codes.ResourceExhausted
	case http2.ErrCodeInadequateSecurity:
		c = codes.PermissionDenied
	}
	return Status{Code: c, Message: "stream terminated by RST_STREAM with error code: " + code.String()}
}

// parseStatus reads grpc-status and grpc-message from trailers; ok is
// false when there is no grpc-status.
func parseStatus(fields []hpack.HeaderField) (st Status, ok bool) {
	for _, f := range fields {
		switch f.Name {
		case "grpc-status":
			n, err := strconv.Atoi(f.Value)
			if err != nil {
				return Status{Code: codes.Unknown, Message: "malformed grpc-status " + strconv.Quote(f.Value)}, true
			}
			st.Code, ok = codes.Code(n), true
		case "grpc-message":
			st.Message = decodeGRPCMessage(f.Value)
		}
	}
	return st, ok
}
