package echo

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// The google.rpc.ErrorInfo detail attached to requested errors; its metadata
// holds the server's name under "server".
const (
	ErrorReason = "ECHO_REQUESTED_ERROR"
	ErrorDomain = "quaestor.example.v1"
)

// requestedError returns the failure req asks for (error_code is not 0): its
// code and message with an ErrorInfo detail naming this server.
func (s *Server) requestedError(req *examplev1.EchoRequest) error {
	st := status.New(codes.Code(req.GetErrorCode()), req.GetErrorMessage())
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   ErrorReason,
		Domain:   ErrorDomain,
		Metadata: map[string]string{"server": s.name},
	})
	if err != nil {
		// Only an OK code or an unmarshalable detail fail here; neither
		// happens, but the requested code still beats an internal error.
		return st.Err()
	}
	return detailed.Err()
}
