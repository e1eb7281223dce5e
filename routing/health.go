package routing

import (
	"context"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthChecker checks one endpoint of one service: it watches
// grpc.health.v1 for the service's name (the server pushes every change),
// falls back to polling Check on servers without Watch, and to the
// server's overall health ("") on servers that do not know the service by
// name. Failures count against UnhealthyThreshold, successes towards
// HealthyThreshold; a NOT_SERVING pushed on a Watch counts at once.
type healthChecker struct {
	cfg    HealthConfig
	conn   *grpc.ClientConn
	state  *EndpointState
	logger *slog.Logger

	name      string // the health service name asked for
	failures  int
	successes int
}

func (h *healthChecker) run(ctx context.Context) {
	h.name = h.state.Service()
	client := healthpb.NewHealthClient(h.conn)
	watch := true
	for ctx.Err() == nil {
		var err error
		if watch {
			err = h.watch(ctx, client)
			if status.Code(err) == codes.Unimplemented {
				watch = false
				continue
			}
		} else {
			err = h.check(ctx, client)
			if status.Code(err) == codes.Unimplemented {
				h.logger.Info("routing: endpoint serves no grpc.health.v1; relying on passive health",
					"service", h.state.Service(), "addr", h.state.Addr())
				h.set(true, "no health service")
				return
			}
		}
		if err != nil && ctx.Err() == nil {
			h.failed(err.Error())
		}
		if !sleep(ctx, h.cfg.Interval) {
			return
		}
	}
}

// watch follows the Watch stream until it breaks, and returns why.
func (h *healthChecker) watch(ctx context.Context, client healthpb.HealthClient) error {
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: h.name})
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		switch resp.GetStatus() {
		case healthpb.HealthCheckResponse_SERVING:
			h.failures, h.successes = 0, h.cfg.HealthyThreshold
			h.set(true, "SERVING")
		case healthpb.HealthCheckResponse_SERVICE_UNKNOWN:
			if h.name != "" {
				// Not known by name: follow the server's overall health.
				h.name = ""
				return h.watch(ctx, client)
			}
			h.failed("SERVICE_UNKNOWN")
		default:
			h.failures, h.successes = h.cfg.UnhealthyThreshold, 0
			h.set(false, resp.GetStatus().String())
		}
	}
}

// check polls once.
func (h *healthChecker) check(ctx context.Context, client healthpb.HealthClient) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: h.name})
	if status.Code(err) == codes.NotFound && h.name != "" {
		h.name = ""
		return h.check(ctx, client)
	}
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		h.failed(resp.GetStatus().String())
		return nil
	}
	h.failures = 0
	if h.successes++; h.successes >= h.cfg.HealthyThreshold {
		h.set(true, "SERVING")
	}
	return nil
}

func (h *healthChecker) failed(why string) {
	h.successes = 0
	if h.failures++; h.failures >= h.cfg.UnhealthyThreshold {
		h.set(false, why)
	}
}

func (h *healthChecker) set(healthy bool, why string) {
	if h.state.Healthy() == healthy {
		return
	}
	h.state.SetHealthy(healthy)
	level, verdict := slog.LevelWarn, "unhealthy"
	if healthy {
		level, verdict = slog.LevelInfo, "healthy"
	}
	h.logger.Log(context.Background(), level, "routing: endpoint "+verdict,
		"service", h.state.Service(), "addr", h.state.Addr(), "reason", why)
}
