package supervisor

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	loadreportingpb "github.com/quaestor-go/quaestor/proto/loadreporting"
)

// Health values of an InstanceStatus besides grpc.health.v1's
// (SERVING, NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN).
const (
	// healthUnreachable: the check call failed (refused, timed out).
	healthUnreachable = "UNREACHABLE"
	healthServing     = "SERVING"
)

// instanceProbe asks one run of an instance, on loopback, for its health
// and its load.
type instanceProbe struct {
	conn   *grpc.ClientConn
	health healthpb.HealthClient
	load   loadreportingpb.LoadReportingGrpcClient
}

// newInstanceProbe prepares a connection to 127.0.0.1:port; it connects
// at the first call.
func newInstanceProbe(port int, hb HeartbeatConfig) (*instanceProbe, error) {
	conn, err := grpc.NewClient("passthrough:///"+net.JoinHostPort(loopback, strconv.Itoa(port)),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect at the pace of the checks, not grpc's default of
		// 1s growing to 2m: a restarted instance is back within one
		// interval.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  min(50*time.Millisecond, hb.Interval),
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   hb.Interval,
			},
			MinConnectTimeout: hb.Timeout,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to the instance: %w", err)
	}
	return &instanceProbe{
		conn:   conn,
		health: healthpb.NewHealthClient(conn),
		load:   loadreportingpb.NewLoadReportingGrpcClient(conn),
	}, nil
}

// check asks for the health of every service, each call within timeout.
// A service the server does not know is checked as "" (the server as a
// whole). It returns SERVING when every service serves, else the first
// other answer, with the error that explains it.
func (p *instanceProbe) check(ctx context.Context, services []string, timeout time.Duration) (string, error) {
	for _, service := range services {
		got, err := p.checkOne(ctx, service, timeout)
		if status.Code(err) == codes.NotFound {
			got, err = p.checkOne(ctx, "", timeout)
		}
		if err != nil {
			return healthUnreachable, fmt.Errorf("checking %s: %w", service, err)
		}
		if got != healthpb.HealthCheckResponse_SERVING {
			return got.String(), fmt.Errorf("%s is %s", service, got)
		}
	}
	return healthServing, nil
}

func (p *instanceProbe) checkOne(ctx context.Context, service string, timeout time.Duration) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// WaitForReady: the check's timeout, not the state of the connection,
	// decides when it fails.
	resp, err := p.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service}, grpc.WaitForReady(true))
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, err
	}
	return resp.GetStatus(), nil
}

// requestsInFlight asks the instance how many requests it is serving.
// reported is false when it does not serve Quaestor.LoadReporting.
func (p *instanceProbe) requestsInFlight(ctx context.Context, service string) (n int32, reported bool, err error) {
	resp, err := p.load.ReportLoad(ctx, &loadreportingpb.LoadReportRequest{ServiceName: service}, grpc.WaitForReady(true))
	if status.Code(err) == codes.Unimplemented {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("asking for the load: %w", err)
	}
	return resp.GetServerStats().GetCurrentRequests(), true, nil
}

func (p *instanceProbe) close() { p.conn.Close() }
