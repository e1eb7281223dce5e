package tracing

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// collector is a real OTLP/gRPC trace receiver on loopback.
type collector struct {
	collectorpb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
	svc   []string
}

func (c *collector) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, attr := range rs.GetResource().GetAttributes() {
			if attr.GetKey() == "service.name" {
				c.svc = append(c.svc, attr.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.names = append(c.names, s.GetName())
			}
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func TestSetupExportsOverOTLP(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	col := &collector{}
	srv := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(srv, col)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cfg := DefaultConfig()
	cfg.OTLPEndpoint, cfg.Insecure, cfg.ServiceName = lis.Addr().String(), true, "quaestor-test"
	tp, shutdown, err := Setup(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(ctx, "proxied call")
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.names) != 1 || col.names[0] != "proxied call" || len(col.svc) != 1 || col.svc[0] != "quaestor-test" {
		t.Errorf("collector got spans %v from %v", col.names, col.svc)
	}
}

func TestSetupOff(t *testing.T) {
	tp, shutdown, err := Setup(t.Context(), DefaultConfig())
	if tp != nil || err != nil || shutdown(t.Context()) != nil {
		t.Errorf("tracing off: %v, %v", tp, err)
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{OTLPEndpoint: "collector", SampleRatio: 1, ServiceName: "q"}, `tracing.otlp_endpoint: "collector" is not host:port`},
		{Config{SampleRatio: 2, ServiceName: "q"}, "tracing.sample_ratio: 2, want 0 to 1"},
		{Config{SampleRatio: 1}, "tracing.service_name: empty"},
	} {
		if err := tt.cfg.Validate(); err == nil || err.Error() != tt.want {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}
