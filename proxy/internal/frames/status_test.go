package frames

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

func TestGRPCMessageEncoding(t *testing.T) {
	tests := []struct {
		name, msg, encoded string
	}{
		{name: "empty", msg: "", encoded: ""},
		{name: "printable ASCII", msg: "no such user: bob", encoded: "no such user: bob"},
		{name: "percent", msg: "100% sure", encoded: "100%25 sure"},
		{name: "newline and tab", msg: "a\nb\tc", encoded: "a%0Ab%09c"},
		{name: "UTF-8", msg: "héllo 世界", encoded: "h%C3%A9llo %E4%B8%96%E7%95%8C"},
		{name: "DEL and NUL", msg: "\x7f\x00", encoded: "%7F%00"},
		{name: "tilde and space stay", msg: " ~", encoded: " ~"},
		{name: "escape at the end", msg: "x%", encoded: "x%25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encodeGRPCMessage(tt.msg)
			if got != tt.encoded {
				t.Errorf("encodeGRPCMessage(%q) = %q, want %q", tt.msg, got, tt.encoded)
			}
			if back := decodeGRPCMessage(got); back != tt.msg {
				t.Errorf("decodeGRPCMessage(%q) = %q, want %q", got, back, tt.msg)
			}
		})
	}
}

func TestDecodeGRPCMessageLeavesBadEscapes(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "lone percent", in: "50%", want: "50%"},
		{name: "one digit", in: "%4", want: "%4"},
		{name: "not hex", in: "%zz ok", want: "%zz ok"},
		{name: "bad then good", in: "%g%41", want: "%gA"},
		{name: "lower-case hex", in: "%c3%a9", want: "é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decodeGRPCMessage(tt.in); got != tt.want {
				t.Errorf("decodeGRPCMessage(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// resetCodes are gRPC's mapping of a reset's HTTP/2 code to a status code.
var resetCodes = []struct {
	code http2.ErrCode
	want codes.Code
}{
	{http2.ErrCodeNo, codes.Internal},
	{http2.ErrCodeProtocol, codes.Internal},
	{http2.ErrCodeInternal, codes.Internal},
	{http2.ErrCodeFlowControl, codes.Internal},
	{http2.ErrCodeStreamClosed, codes.Internal},
	{http2.ErrCodeFrameSize, codes.Internal},
	{http2.ErrCodeRefusedStream, codes.Unavailable},
	{http2.ErrCodeCancel, codes.Canceled},
	{http2.ErrCodeCompression, codes.Internal},
	{http2.ErrCodeConnect, codes.Internal},
	{http2.ErrCodeEnhanceYourCalm, codes.ResourceExhausted},
	{http2.ErrCodeInadequateSecurity, codes.PermissionDenied},
	{http2.ErrCodeHTTP11Required, codes.Internal},
}

func TestResetStatus(t *testing.T) {
	for _, tt := range resetCodes {
		t.Run(tt.code.String(), func(t *testing.T) {
			want := Status{Code: tt.want, Message: "stream terminated by RST_STREAM with error code: " + tt.code.String()}
			if diff := cmp.Diff(want, resetStatus(tt.code)); diff != "" {
				t.Errorf("resetStatus(%v) (-want +got):\n%s", tt.code, diff)
			}
		})
	}
}

func TestStatusFieldsParseBack(t *testing.T) {
	tests := []struct {
		name         string
		st           Status
		trailersOnly bool
		want         []hpack.HeaderField
	}{
		{name: "OK", st: Status{Code: codes.OK}, want: []hpack.HeaderField{{Name: "grpc-status", Value: "0"}}},
		{name: "trailers-only", st: Status{Code: codes.Unavailable, Message: "down 100%"}, trailersOnly: true,
			want: []hpack.HeaderField{
				{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"},
				{Name: "grpc-status", Value: "14"}, {Name: "grpc-message", Value: "down 100%25"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields := statusFields(tt.st, tt.trailersOnly)
			if diff := cmp.Diff(tt.want, fields); diff != "" {
				t.Errorf("statusFields (-want +got):\n%s", diff)
			}
			st, ok := parseStatus(fields)
			if !ok || st != tt.st {
				t.Errorf("parseStatus = %v, %v; want %v, true", st, ok, tt.st)
			}
		})
	}
	if st, ok := parseStatus([]hpack.HeaderField{{Name: "grpc-status", Value: "x"}}); !ok || st.Code != codes.Unknown {
		t.Errorf("malformed grpc-status parsed as %v, %v; want Unknown", st, ok)
	}
	if _, ok := parseStatus([]hpack.HeaderField{{Name: "grpc-message", Value: "m"}}); ok {
		t.Error("trailers without grpc-status parsed as a status")
	}
}
