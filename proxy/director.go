package proxy

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A Director chooses the connection that carries a call to fullMethod
// ("/pkg.Service/Method"). ctx is the incoming call's context, with its
// metadata and deadline. The error it returns ends the call before any
// backend sees it, so it must be a status error with the code the client
// should get. The connection is not closed by the proxy.
type Director func(ctx context.Context, fullMethod string) (grpc.ClientConnInterface, error)

// Router is what the proxy needs from routing: a connection per service,
// and the list of services it routes to.
type Router interface {
	// Conn returns the connection that balances calls to the service (e.g.
	// "pkg.Service"), or a status error (codes.Unimplemented for a service
	// nobody serves).
	Conn(service string) (grpc.ClientConnInterface, error)
	// Services lists the routed services, for reflection.
	Services() []string
}

// RouterDirector directs each call to the connection of its service.
func RouterDirector(r Router) Director {
	return func(_ context.Context, fullMethod string) (grpc.ClientConnInterface, error) {
		service, _, err := SplitMethod(fullMethod)
		if err != nil {
			return nil, err
		}
		return r.Conn(service)
	}
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
