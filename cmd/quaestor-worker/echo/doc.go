// Package echo implements quaestor.example.v1.Echo, the example service that
// quaestor-worker serves and that the proxy tests and the benchmarks call.
//
// The service does what each request asks, so that a test can make a backend
// behave the way a proxy must pass through: it echoes the payload or answers
// with response_size bytes, waits a delay before each answer (ending early
// when the call is cancelled), sends its response headers at once, or fails
// with a requested status carrying a google.rpc.ErrorInfo detail.
//
// Every answer (a response or the requested error) is preceded by a wait of
// Options.Delay plus the delay of the request being answered. Request
// metadata, except pseudo-headers, "content-type", "user-agent", "te" and
// "grpc-" keys, is echoed into the response headers and into the trailers;
// the headers also carry "x-echo-server" with the server's name.
//
// A Server counts the calls it started, the calls running and the calls that
// ended because the caller cancelled or the deadline passed, so that tests can
// see what a proxy did to the backend:
//
//	srv := echo.New(echo.Options{Name: "backend-a"})
//	gs := grpc.NewServer()
//	examplev1.RegisterEchoServer(gs, srv)
//	go gs.Serve(lis)
//	// ... call it through the proxy, then:
//	if srv.Canceled() != 1 { ... }
package echo
