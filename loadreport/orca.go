package loadreport

import (
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	v3orcaservicepb "github.com/cncf/xds/go/xds/service/orca/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/orca"
	"google.golang.org/grpc/status"
)

// Keys of the figures loadreport adds to ORCA reports, next to ORCA's own
// fields (see the package doc).
const (
	// CurrentRequestsMetric is the named metric holding the calls in
	// flight, as ReportLoad's current_requests.
	CurrentRequestsMetric = "current_requests"
	// RequestCapacityMetric is the named metric holding the capacity, as
	// ReportLoad's request_capacity; absent when the capacity is unknown.
	RequestCapacityMetric = "request_capacity"
	// RequestsUtilization is the utilization current_requests /
	// request_capacity, at most 1; absent when the capacity is unknown.
	RequestsUtilization = "requests"
)

// minReportingInterval is the shortest interval between two out-of-band
// reports on one stream.
const minReportingInterval = 100 * time.Millisecond

// metricsProvider builds ORCA metrics from the Reporter at each request,
// rather than from an orca.ServerMetricsRecorder fed by the sampler, so that
// the calls in flight and the known load rate are current in every report.
type metricsProvider struct {
	r *Reporter
}

var _ orca.ServerMetricsProvider = metricsProvider{}

func (p metricsProvider) ServerMetrics() *orca.ServerMetrics {
	return serverMetrics(p.r.Report())
}

// serverMetrics is snap in ORCA's terms; -1 leaves a field unset.
func serverMetrics(snap Snapshot) *orca.ServerMetrics {
	sm := &orca.ServerMetrics{
		CPUUtilization: snap.CPU,
		MemUtilization: snap.Memory / 100,
		AppUtilization: -1,
		QPS:            snap.QPS,
		EPS:            snap.EPS,
		Utilization:    make(map[string]float64, 1),
		RequestCost:    map[string]float64{},
		NamedMetrics:   map[string]float64{CurrentRequestsMetric: float64(snap.InFlight)},
	}
	if snap.KnownLoadRate >= 0 {
		sm.AppUtilization = snap.KnownLoadRate
	}
	if snap.Capacity > 0 {
		sm.NamedMetrics[RequestCapacityMetric] = float64(snap.Capacity)
		sm.Utilization[RequestsUtilization] = min(float64(snap.InFlight)/float64(snap.Capacity), 1)
	}
	return sm
}

// orcaLoadReport is sm as the ORCA proto, the way grpc-go's orca package
// encodes it for trailers.
func orcaLoadReport(sm *orca.ServerMetrics) *v3orcapb.OrcaLoadReport {
	report := &v3orcapb.OrcaLoadReport{
		Utilization:  sm.Utilization,
		RequestCost:  sm.RequestCost,
		NamedMetrics: sm.NamedMetrics,
	}
	if sm.CPUUtilization != -1 {
		report.CpuUtilization = sm.CPUUtilization
	}
	if sm.MemUtilization != -1 {
		report.MemUtilization = sm.MemUtilization
	}
	if sm.AppUtilization != -1 {
		report.ApplicationUtilization = sm.AppUtilization
	}
	if sm.QPS != -1 {
		report.RpsFractional = sm.QPS
	}
	if sm.EPS != -1 {
		report.Eps = sm.EPS
	}
	return report
}

// outOfBandServer serves xds.service.orca.v3.OpenRcaService.
type outOfBandServer struct {
	v3orcaservicepb.UnimplementedOpenRcaServiceServer
	r *Reporter
}

// StreamCoreMetrics sends a report at once, then one every interval (see
// Register), until the client cancels or the Reporter is closed.
func (s outOfBandServer) StreamCoreMetrics(req *v3orcaservicepb.OrcaLoadReportRequest, stream grpc.ServerStreamingServer[v3orcapb.OrcaLoadReport]) error {
	interval := s.r.interval
	if req.GetReportInterval() != nil {
		interval = req.GetReportInterval().AsDuration()
	}
	ticker := time.NewTicker(max(interval, minReportingInterval))
	defer ticker.Stop()
	ctx := stream.Context()
	for {
		if err := stream.Send(orcaLoadReport(serverMetrics(s.r.Report()))); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.r.ctx.Done():
			return status.Error(codes.Unavailable, "loadreport: load reporter closed")
		case <-ticker.C:
		}
	}
}
