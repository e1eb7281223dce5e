package loadreport

import (
	"context"
	"fmt"
	"math"
	"time"

	v3orcaservicepb "github.com/cncf/xds/go/xds/service/orca/v3"
	"google.golang.org/grpc"

	loadreportingpb "github.com/quaestor-go/quaestor/proto/loadreporting"
)

// The services Register adds.
var (
	loadReportingService = loadreportingpb.LoadReportingGrpc_ServiceDesc.ServiceName
	orcaService          = v3orcaservicepb.OpenRcaService_ServiceDesc.ServiceName
)

// Register registers Quaestor.LoadReporting.LoadReportingGrpc and the ORCA
// out-of-band service xds.service.orca.v3.OpenRcaService on s. Call it
// before s.Serve. It fails, rather than letting grpc exit the process, if
// either service is already registered.
//
// The ORCA service reports at the interval each stream asks for, but not
// more often than every 100 ms; a stream that asks for none gets a report
// every Options.Interval. (grpc-go's own orca.Register holds every stream to
// 30 s at least, too slow to rank backends by load, so loadreport serves the
// stream itself.) Close ends the streams.
func (r *Reporter) Register(s *grpc.Server) error {
	registered := s.GetServiceInfo()
	for _, name := range []string{loadReportingService, orcaService} {
		if _, ok := registered[name]; ok {
			return fmt.Errorf("loadreport: registering %s: already registered", name)
		}
	}
	loadreportingpb.RegisterLoadReportingGrpcServer(s, loadReportingServer{r: r})
	v3orcaservicepb.RegisterOpenRcaServiceServer(s, outOfBandServer{r: r})
	return nil
}

// loadReportingServer serves Quaestor.LoadReporting.LoadReportingGrpc.
type loadReportingServer struct {
	loadreportingpb.UnimplementedLoadReportingGrpcServer
	r *Reporter
}

// ReportLoad answers any scope and service name with the process's load:
// the services of one process share its calls, CPU and memory.
func (s loadReportingServer) ReportLoad(context.Context, *loadreportingpb.LoadReportRequest) (*loadreportingpb.LoadReportResponse, error) {
	return loadReportResponse(s.r.Report()), nil
}

// loadReportResponse is snap in the quaestor wire format.
func loadReportResponse(snap Snapshot) *loadreportingpb.LoadReportResponse {
	return &loadreportingpb.LoadReportResponse{
		TimestampTicks: dotnetTicks(snap.Time),
		KnownLoadRate:  snap.KnownLoadRate,
		ServerStats: &loadreportingpb.ServerStats{
			RequestCapacity:          clampInt32(snap.Capacity),
			CurrentRequests:          clampInt32(snap.InFlight),
			ServerUtilization:        snap.CPU,
			ServerMemoryUsagePercent: snap.Memory,
		},
	}
}

// unixEpochTicks is 1970-01-01 UTC in .NET ticks.
const unixEpochTicks = 621_355_968_000_000_000

// dotnetTicks returns t as .NET DateTime ticks: 100 ns units since
// 0001-01-01 UTC.
func dotnetTicks(t time.Time) int64 {
	return unixEpochTicks + t.Unix()*10_000_000 + int64(t.Nanosecond()/100)
}

func clampInt32(n int) int32 {
	return int32(min(max(n, math.MinInt32), math.MaxInt32))
}
