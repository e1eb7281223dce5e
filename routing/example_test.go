package routing_test

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing"
)

// A table of static endpoints, a monitor checking them, and a router
// placing calls on them.
func Example() {
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	backend := grpc.NewServer()
	examplev1.RegisterEchoServer(backend, echo.New(echo.Options{Name: "backend-1"}))
	go backend.Serve(lis)
	defer backend.Stop()

	table := routing.NewTable()
	if err := routing.LoadStatic(table, []routing.ServiceConfig{
		{Name: "quaestor.example.v1.Echo", Endpoints: []string{lis.Addr().String()}},
	}); err != nil {
		panic(err)
	}
	monitor, err := routing.StartMonitor(routing.MonitorOptions{Table: table, Logger: quietLogger})
	if err != nil {
		panic(err)
	}
	defer monitor.Close()
	router, err := routing.NewRouter(routing.Options{Table: table, DefaultPolicy: routing.PolicyLeastLoaded})
	if err != nil {
		panic(err)
	}
	defer router.Close()

	conn, err := router.Conn("quaestor.example.v1.Echo")
	if err != nil {
		panic(err)
	}
	resp, err := examplev1.NewEchoClient(conn).Unary(context.Background(), &examplev1.EchoRequest{Payload: []byte("hi")})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.GetServer(), string(resp.GetPayload()))

	_, err = router.Conn("nosuch.Service")
	fmt.Println(err)
	// Output:
	// backend-1 hi
	// rpc error: code = Unimplemented desc = quaestor: unknown service "nosuch.Service": no instance of it is listed in the config or registered
}
