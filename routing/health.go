package routing

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

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
	conn   grpc.ClientConnInterface
	state  *EndpointState
	logger *slog.Logger

	name      string // the health service name asked for
	failures  int
	successes int
}

func (h *healthChecker) run(ctx context.Context) {
	h.name = h.state.Service()
	client := healthpb.NewHealthClient(h.conn)
	watch, first := true, true
	for ctx.Err() == nil {
		var err error
		if watch {
			err = h.watch(ctx, client)
			if status.Code(err) == codes.Unimplemented {
				watch = false
				continue
			}
			if errors.Is(err, errWatchAgain) {
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
		wait := h.cfg.Interval
		if first {
			wait, first = phase(wait), false
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// watch follows the Watch stream until it breaks, and returns why.
//
// A Watch says nothing when the backend hangs with its connection open (a
// stopped process, a wedged server): no status comes, and the calls sent
// to it wait for their deadlines. So while calls are in flight on the
// endpoint, or it is unhealthy, watch also sends a Check every Interval:
// an unanswered one counts as a failed check, and answered ones bring a
// recovered endpoint back. An idle healthy endpoint costs no Check.
func (h *healthChecker) watch(ctx context.Context, client healthpb.HealthClient) error {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: h.name})
	if err != nil {
		cancel()
		return err
	}
	updates := make(chan watchUpdate)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			resp, err := stream.Recv()
			select {
			case updates <- watchUpdate{resp, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	defer func() {
		cancel()
		wg.Wait()
	}()
	tick := time.NewTimer(phase(h.cfg.Interval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			tick.Reset(h.cfg.Interval)
			if h.state.InFlight() == 0 && h.state.Healthy() {
				continue
			}
			if err := h.check(ctx, client); err != nil && ctx.Err() == nil {
				h.failed("a health check while watching: " + err.Error())
			}
		case u := <-updates:
			if u.err != nil {
				return u.err
			}
			switch u.resp.GetStatus() {
			case healthpb.HealthCheckResponse_SERVING:
				h.failures, h.successes = 0, h.cfg.HealthyThreshold
				h.set(true, "SERVING")
			case healthpb.HealthCheckResponse_SERVICE_UNKNOWN:
				if h.name != "" {
					// Not known by name: follow the server's overall health.
					h.name = ""
					return errWatchAgain
				}
				h.failed("SERVICE_UNKNOWN")
			default:
				h.failures, h.successes = h.cfg.UnhealthyThreshold, 0
				h.set(false, u.resp.GetStatus().String())
			}
		}
	}
}

// watchUpdate is what one Recv on a Watch stream returned.
type watchUpdate struct {
	resp *healthpb.HealthCheckResponse
	err  error
}

// errWatchAgain asks run to open the Watch again at once, for another
// health service name.
var errWatchAgain = errors.New("routing: watch the server's overall health")

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
