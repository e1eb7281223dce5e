package loadreport_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/quaestor-go/quaestor/loadreport"
	loadreportingpb "github.com/quaestor-go/quaestor/proto/loadreporting"
)

// A backend reports its load: build the server with the reporter's options,
// register the reporting services next to the application's own, and
// quaestor (here a plain client) asks for the load.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	rep := loadreport.New(loadreport.Options{Capacity: 100})
	defer rep.Close()
	srv := grpc.NewServer(rep.ServerOptions()...)
	if err := rep.Register(srv); err != nil {
		fmt.Println(err)
		return
	}
	// ... register the application's services on srv ...

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		<-served
	}()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	client := loadreportingpb.NewLoadReportingGrpcClient(cc)

	report := func() {
		resp, err := client.ReportLoad(ctx, &loadreportingpb.LoadReportRequest{ServiceName: "quaestor.example.v1.Echo"})
		if err != nil {
			fmt.Println(err)
			return
		}
		stats := resp.GetServerStats()
		fmt.Printf("capacity %d, current %d, known load rate %v\n",
			stats.GetRequestCapacity(), stats.GetCurrentRequests(), resp.GetKnownLoadRate())
	}
	report()
	// The application knows better: a queue 30% full.
	rep.SetKnownLoadRate(0.3)
	report()
	// Output:
	// capacity 100, current 0, known load rate -1
	// capacity 100, current 0, known load rate 0.3
}
