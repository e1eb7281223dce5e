package proxy

import (
	"crypto/tls"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/routing"
)

// Router is what the proxy needs from routing: an endpoint per call, a
// connection per service for reflection, the list of services, and the
// retry rules.
type Router interface {
	// Pick places one attempt of a call of fullMethod of service on an
	// endpoint (see routing.Router.Pick): a status error with the code the
	// client should get when it cannot (codes.Unimplemented for a service
	// nobody serves, codes.Unavailable for one without endpoints). skip
	// rules out addresses the proxy cannot reach now.
	Pick(service, fullMethod string, header metadata.MD, skip func(addr string) bool) (routing.Picked, error)
	// Conn returns the connection that balances calls to the service (e.g.
	// "pkg.Service"), or a status error: reflection asks backends through
	// it.
	Conn(service string) (grpc.ClientConnInterface, error)
	// Services lists the routed services, for reflection.
	Services() []string
	// HashKey is the request metadata key Pick reads for the service
	// (lower case), "" for none: the proxy passes Pick no other metadata.
	HashKey(service string) string
	// ServiceTLS is the client TLS of the service's backends, nil for
	// plaintext.
	ServiceTLS(service string) *tls.Config
	// RetryDelay says whether an attempt of fullMethod that failed with
	// UNAVAILABLE before the backend answered may be sent again, and
	// after how long (see routing.Router.RetryDelay).
	RetryDelay(service, fullMethod string, attempts int) (time.Duration, bool)
}

// SplitMethod splits "/pkg.Service/Method" into its service and method
// names. A malformed path gives a codes.Unimplemented status error.
func SplitMethod(fullMethod string) (service, method string, err error) {
	rest, ok := strings.CutPrefix(fullMethod, "/")
	if ok {
		service, method, ok = strings.Cut(rest, "/")
	}
	if !ok || service == "" || method == "" || strings.Contains(method, "/") {
		return "", "", status.Errorf(codes.Unimplemented, "quaestor: malformed method name %q, want /package.Service/Method", fullMethod)
	}
	return service, method, nil
}
