package routing

import (
	"context"
	"log/slog"
	"time"

	v3orcaservicepb "github.com/cncf/xds/go/xds/service/orca/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	loadreportingpb "github.com/quaestor-go/quaestor/proto/loadreporting"
)

// loadCollector asks one endpoint for its load: by polling the quaestor
// ReportLoad RPC, which .NET workers serve, or else from an ORCA
// out-of-band stream. Servers with neither are ranked by the proxy's own
// in-flight counts and by ORCA per-call trailers, if they send them.
//
// While an endpoint's calls bring per-call reports, the poll is skipped:
// those reports are newer than any poll would be, and at hundreds of busy
// endpoints the polls would be a cost that grows with their number.
type loadCollector struct {
	cfg    LoadConfig
	scope  string
	conn   grpc.ClientConnInterface
	state  *EndpointState
	logger *slog.Logger
}

// start polls at once, then every Interval, on a timer's goroutine
// (no goroutine of its own between polls); an endpoint with ORCA instead
// is followed on the timer's goroutine until ctx ends.
func (l *loadCollector) start(ctx context.Context) *timerLoop {
	client := loadreportingpb.NewLoadReportingGrpcClient(l.conn)
	first := true
	return startTimerLoop(0, func() (time.Duration, bool) {
		if ctx.Err() != nil {
			return 0, false
		}
		// The first poll tells which protocol the endpoint speaks.
		if first || !l.callReportsFresh(time.Now()) {
			err := l.poll(ctx, client)
			if status.Code(err) == codes.Unimplemented {
				l.streamORCA(ctx)
				return 0, false
			}
			if err != nil {
				l.forgetStale()
			}
		}
		if first {
			first = false
			return phase(l.cfg.Interval), true
		}
		return l.cfg.Interval, true
	})
}

// callReportsFresh reports whether the endpoint's latest load report is a
// per-call one recent enough that calls are still bringing them (they are
// taken every perCallLoadInterval while calls flow).
func (l *loadCollector) callReportsFresh(now time.Time) bool {
	r := l.state.Load()
	return r != nil && r.Source == "orca-call" && now.Sub(r.Time) < max(l.cfg.Interval, 2*perCallLoadInterval)
}

func (l *loadCollector) poll(ctx context.Context, client loadreportingpb.LoadReportingGrpcClient) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Interval)
	defer cancel()
	resp, err := client.ReportLoad(ctx, &loadreportingpb.LoadReportRequest{Scope: l.scope, ServiceName: l.state.Service()})
	if err != nil {
		return err
	}
	l.state.SetLoad(fromLoadReport(resp, time.Now()))
	return nil
}

// fromLoadReport reads a Quaestor.LoadReporting answer. Utilization above
// 1 is taken as a percentage, as some workers report it.
func fromLoadReport(resp *loadreportingpb.LoadReportResponse, now time.Time) *LoadReport {
	stats := resp.GetServerStats()
	util := stats.GetServerUtilization()
	if util > 1 {
		util /= 100
	}
	return &LoadReport{
		KnownLoadRate:   resp.GetKnownLoadRate(),
		Utilization:     util,
		MemoryPercent:   stats.GetServerMemoryUsagePercent(),
		CurrentRequests: int(stats.GetCurrentRequests()),
		RequestCapacity: int(stats.GetRequestCapacity()),
		Source:          "report",
		Time:            now,
	}
}

// forgetStale drops a report older than MaxAge, so that rankings stop
// counting it now rather than at the next change.
func (l *loadCollector) forgetStale() {
	if r := l.state.Load(); r != nil && time.Since(r.Time) > l.cfg.MaxAge {
		l.state.SetLoad(nil)
	}
}

// streamORCA follows the endpoint's ORCA out-of-band reports until the
// stream is refused for good or ctx ends.
func (l *loadCollector) streamORCA(ctx context.Context) {
	client := v3orcaservicepb.NewOpenRcaServiceClient(l.conn)
	for {
		stream, err := client.StreamCoreMetrics(ctx, &v3orcaservicepb.OrcaLoadReportRequest{
			ReportInterval: durationpb.New(l.cfg.Interval),
		})
		for err == nil {
			r, recvErr := stream.Recv()
			if recvErr != nil {
				err = recvErr
				break
			}
			l.state.recordORCA(r, "orca-oob")
		}
		if status.Code(err) == codes.Unimplemented {
			return
		}
		l.forgetStale()
		if !sleep(ctx, l.cfg.Interval) {
			return
		}
	}
}
