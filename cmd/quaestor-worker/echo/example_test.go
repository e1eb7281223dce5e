package echo_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// A backend for a test: serve an echo.Server on loopback, call it, and read
// its counters.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := echo.New(echo.Options{Name: "backend-a"})
	gs := grpc.NewServer()
	examplev1.RegisterEchoServer(gs, srv)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	defer func() {
		gs.Stop()
		<-served
	}()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()

	resp, err := examplev1.NewEchoClient(cc).Unary(ctx, &examplev1.EchoRequest{Payload: []byte("hello")})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.GetServer(), resp.GetSequence(), string(resp.GetPayload()))
	fmt.Println("calls:", srv.Calls(), "in flight:", srv.InFlight(), "canceled:", srv.Canceled())
	// Output:
	// backend-a 1 hello
	// calls: 1 in flight: 0 canceled: 0
}
