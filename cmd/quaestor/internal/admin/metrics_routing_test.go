package admin

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/cmd/quaestor-worker/echo"
	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
	"github.com/quaestor-go/quaestor/routing"
)

// endpointState returns the state the table keeps for service and addr.
func endpointState(t *testing.T, table *routing.Table, service, addr string) *routing.EndpointState {
	t.Helper()
	eps, _ := table.Endpoints(service)
	for _, ep := range eps {
		if ep.Addr == addr {
			return ep.State
		}
	}
	t.Fatalf("%s has no endpoint %s", service, addr)
	return nil
}

func TestRoutingCollector(t *testing.T) {
	table := routing.NewTable()
	table.Update("svc.A", routing.SourceStatic, []routing.Endpoint{{Addr: "10.0.0.1:7001"}, {Addr: "10.0.0.2:7001"}})
	table.Update("svc.B", routing.SourceStatic, []routing.Endpoint{{Addr: "10.0.0.3:7002"}})
	reported := time.Unix(1_700_000_000, 0)

	a1 := endpointState(t, table, "svc.A", "10.0.0.1:7001")
	a1.SetLoad(&routing.LoadReport{KnownLoadRate: 0.3, Utilization: 0.5, Time: reported})
	a1.Started()
	a1.Started()
	a1.Finished(100 * time.Millisecond)
	endpointState(t, table, "svc.A", "10.0.0.2:7001").SetHealthy(false)
	// No known rate and no capacity: a utilization, but no load rate.
	endpointState(t, table, "svc.B", "10.0.0.3:7002").SetLoad(&routing.LoadReport{KnownLoadRate: -1, Utilization: 0.25, Time: reported})

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(RoutingCollector(table))
	const (
		a1Labels = `{addr="10.0.0.1:7001",service="svc.A"}`
		a2Labels = `{addr="10.0.0.2:7001",service="svc.A"}`
		b1Labels = `{addr="10.0.0.3:7002",service="svc.B"}`
	)
	want := map[string]float64{
		"quaestor_endpoint_in_flight" + a1Labels:                     1,
		"quaestor_endpoint_picks_total" + a1Labels:                   2,
		"quaestor_endpoint_healthy" + a1Labels:                       1,
		"quaestor_endpoint_ejected" + a1Labels:                       0,
		"quaestor_endpoint_ejections_total" + a1Labels:               0,
		"quaestor_endpoint_latency_ewma_seconds" + a1Labels:          0.1,
		"quaestor_endpoint_load_rate" + a1Labels:                     0.3,
		"quaestor_endpoint_utilization" + a1Labels:                   0.5,
		"quaestor_endpoint_load_report_timestamp_seconds" + a1Labels: 1_700_000_000,

		"quaestor_endpoint_in_flight" + a2Labels:            0,
		"quaestor_endpoint_picks_total" + a2Labels:          0,
		"quaestor_endpoint_healthy" + a2Labels:              0,
		"quaestor_endpoint_ejected" + a2Labels:              0,
		"quaestor_endpoint_ejections_total" + a2Labels:      0,
		"quaestor_endpoint_latency_ewma_seconds" + a2Labels: 0,

		"quaestor_endpoint_in_flight" + b1Labels:                     0,
		"quaestor_endpoint_picks_total" + b1Labels:                   0,
		"quaestor_endpoint_healthy" + b1Labels:                       1,
		"quaestor_endpoint_ejected" + b1Labels:                       0,
		"quaestor_endpoint_ejections_total" + b1Labels:               0,
		"quaestor_endpoint_latency_ewma_seconds" + b1Labels:          0,
		"quaestor_endpoint_utilization" + b1Labels:                   0.25,
		"quaestor_endpoint_load_report_timestamp_seconds" + b1Labels: 1_700_000_000,
	}
	if diff := cmp.Diff(want, gatherSeries(t, reg, "quaestor_endpoint_")); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}

	// An endpoint that leaves the table takes its series along.
	table.Update("svc.A", routing.SourceStatic, []routing.Endpoint{{Addr: "10.0.0.1:7001"}})
	for name := range gatherSeries(t, reg, "quaestor_endpoint_") {
		if strings.HasSuffix(name, a2Labels) {
			t.Errorf("%s still exported after its endpoint left", name)
		}
	}
}

// TestRoutingCollectorEjected fails calls on one of two endpoints through
// a real router until passive health ejects it.
func TestRoutingCollectorEjected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	good := grpc.NewServer()
	examplev1.RegisterEchoServer(good, echo.New(echo.Options{}))
	goodAddr := serve(t, good)
	badAddr := serve(t, grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, "going away")
	})))

	table := routing.NewTable()
	table.SetPassiveHealth(routing.PassiveHealth{Failures: 1, EjectTime: time.Minute, MaxEjectTime: time.Minute}, slog.New(slog.DiscardHandler))
	table.Update(echoService, routing.SourceStatic, []routing.Endpoint{{Addr: goodAddr}, {Addr: badAddr}})
	router, err := routing.NewRouter(routing.Options{Table: table, DefaultPolicy: routing.PolicyRoundRobin, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	conn, err := router.Conn(echoService)
	if err != nil {
		t.Fatal(err)
	}
	bad := endpointState(t, table, echoService, badAddr)
	client := examplev1.NewEchoClient(conn)
	for !bad.Ejected(time.Now()) {
		if _, err := client.Unary(ctx, &examplev1.EchoRequest{}); ctx.Err() != nil {
			t.Fatalf("%s not ejected: last call: %v", badAddr, err)
		}
	}

	collector := RoutingCollector(table)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector)
	ejected := func() map[string]float64 { return gatherSeries(t, reg, "quaestor_endpoint_ejected") }
	want := map[string]float64{
		`quaestor_endpoint_ejected{addr="` + goodAddr + `",service="quaestor.example.v1.Echo"}`: 0,
		`quaestor_endpoint_ejected{addr="` + badAddr + `",service="quaestor.example.v1.Echo"}`:  1,
	}
	if diff := cmp.Diff(want, ejected()); diff != "" {
		t.Errorf("during the ejection (-want +got):\n%s", diff)
	}

	// Once the ejection time is up, the endpoint is back.
	collector.(*routingCollector).now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	want[`quaestor_endpoint_ejected{addr="`+badAddr+`",service="quaestor.example.v1.Echo"}`] = 0
	if diff := cmp.Diff(want, ejected()); diff != "" {
		t.Errorf("after the ejection (-want +got):\n%s", diff)
	}
}
