package proxy_test

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
)

// A proxy in front of one backend: the client calls the proxy's address
// as if the service were there.
func Example() {
	backendLis, _ := net.Listen("tcp", "127.0.0.1:0")
	backend := grpc.NewServer()
	examplev1.RegisterEchoServer(backend, echo.New(echo.Options{Name: "backend-1"}))
	go backend.Serve(backendLis)
	defer backend.Stop()

	table := routing.NewTable()
	table.Update("quaestor.example.v1.Echo", routing.SourceStatic, []routing.Endpoint{{Addr: backendLis.Addr().String()}})
	router, _ := routing.NewRouter(routing.Options{Table: table})
	defer router.Close()

	cfg := proxy.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	srv, err := proxy.NewServer(proxy.Options{Config: cfg, Router: router, Logger: quietLog})
	if err != nil {
		panic(err)
	}
	lis, _ := net.Listen("tcp", cfg.Listen)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx, lis) }() // drains when ctx ends

	conn, _ := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer conn.Close()
	resp, err := examplev1.NewEchoClient(conn).Unary(context.Background(), &examplev1.EchoRequest{Payload: []byte("through the proxy")})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.GetServer(), string(resp.GetPayload()))
	stop()
	fmt.Println("drained:", <-done)
	// Output:
	// backend-1 through the proxy
	// drained: <nil>
}
