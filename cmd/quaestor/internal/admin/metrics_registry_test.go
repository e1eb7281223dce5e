package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"

	"github.com/quaestor-go/quaestor/proxy"
	"github.com/quaestor-go/quaestor/routing"
	"github.com/quaestor-go/quaestor/supervisor"
)

// gatherSeries gathers g and returns the value of every series whose name
// starts with prefix, keyed `name{label="value",...}` (labels sorted by
// name). A histogram gives its sample count, as `name_count{...}`: its
// sums and buckets depend on timing.
func gatherSeries(t *testing.T, g prometheus.Gatherer, prefix string) map[string]float64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	out := make(map[string]float64)
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), prefix) {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := "{" + strings.Join(labels, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[f.GetName()+key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[f.GetName()+key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[f.GetName()+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
			default:
				t.Fatalf("%s: unexpected metric type %v", f.GetName(), f.GetType())
			}
		}
	}
	return out
}

// TestMetricsRegisterTogether registers every collector of quaestor's in
// one pedantic registry, as the stack does, and serves them at /metrics.
func TestMetricsRegisterTogether(t *testing.T) {
	table := routing.NewTable()
	table.Update("svc.A", routing.SourceStatic, []routing.Endpoint{{Addr: "127.0.0.1:7001"}})
	eps, _ := table.Endpoints("svc.A")
	eps[0].State.SetLoad(&routing.LoadReport{KnownLoadRate: 0.3, Utilization: 0.5, Time: time.Now()})

	proxyMetrics := NewProxyMetrics()
	proxyMetrics.ObserveCall("/svc.A/Get")(proxy.CallResult{Code: codes.NotFound, Duration: time.Millisecond, Received: 1})

	statuses := func() []supervisor.InstanceStatus {
		return []supervisor.InstanceStatus{{Agent: "echo", State: supervisor.StateRunning, PID: 42, StartedAt: time.Now(), Registered: true}}
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	reg.MustRegister(proxyMetrics, RoutingCollector(table), SupervisorCollector(statuses))
	got := gatherSeries(t, reg, "quaestor_")
	for _, name := range []string{
		`quaestor_proxy_requests_total{code="NotFound",method="Get",service="svc.A"}`,
		`quaestor_proxy_request_duration_seconds_count{method="Get",service="svc.A"}`,
		`quaestor_endpoint_load_rate{addr="127.0.0.1:7001",service="svc.A"}`,
		`quaestor_supervisor_instance_state{agent="echo",instance="0",state="running"}`,
	} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s not gathered; got %v", name, got)
		}
	}

	srv, err := New(Options{Listen: "127.0.0.1:0", Gatherer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	code, body := get(t, "http://"+srv.Addr()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", code, body)
	}
	for _, want := range []string{
		"# TYPE quaestor_proxy_request_duration_seconds histogram",
		"# TYPE quaestor_endpoint_picks_total counter",
		"# TYPE quaestor_supervisor_restarts_total counter",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
}
