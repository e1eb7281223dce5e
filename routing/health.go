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

	// mu guards what follows: the watch and its checks run on two
	// goroutines.
	mu        sync.Mutex
	name      string // the health service name asked for
	failures  int
	successes int
	// pushes counts the statuses the Watch pushed: a check answered
	// after a newer push is stale, and not counted.
	pushes uint64
}

func (h *healthChecker) run(ctx context.Context) {
	h.name = h.state.Service() // before any other goroutine reads it
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
				h.mu.Lock()
				h.setLocked(true, "no health service")
				h.mu.Unlock()
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
// endpoint, or it is unhealthy, watch also sends a Check every Interval
// (on a timer's goroutine: the watch's own waits in Recv): an unanswered
// one counts as a failed check, and answered ones bring a recovered
// endpoint back. An idle healthy endpoint costs no Check.
func (h *healthChecker) watch(ctx context.Context, client healthpb.HealthClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: h.serviceName()})
	if err != nil {
		return err
	}
	checks := startTimerLoop(phase(h.cfg.Interval), func() (time.Duration, bool) {
		if ctx.Err() != nil {
			return 0, false
		}
		if h.state.InFlight() > 0 || !h.state.Healthy() {
			if err := h.check(ctx, client); err != nil && ctx.Err() == nil {
				h.failed("a health check while watching: " + err.Error())
			}
		}
		return h.cfg.Interval, true
	})
	defer func() {
		cancel() // ends a check under way, which stop waits for
		checks.stop()
	}()
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if again := h.onWatch(resp.GetStatus()); again {
			return errWatchAgain
		}
	}
}

// onWatch takes a status the Watch pushed; true when the server does not
// know the service by name, and its overall health is to be watched.
func (h *healthChecker) onWatch(st healthpb.HealthCheckResponse_ServingStatus) (again bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pushes++
	switch st {
	case healthpb.HealthCheckResponse_SERVING:
		h.failures, h.successes = 0, h.cfg.HealthyThreshold
		h.setLocked(true, "SERVING")
	case healthpb.HealthCheckResponse_SERVICE_UNKNOWN:
		if h.name != "" {
			h.name = ""
			return true
		}
		h.failedLocked("SERVICE_UNKNOWN")
	default:
		h.failures, h.successes = h.cfg.UnhealthyThreshold, 0
		h.setLocked(false, st.String())
	}
	return false
}

// errWatchAgain asks run to open the Watch again at once, for another
// health service name.
var errWatchAgain = errors.New("routing: watch the server's overall health")

// check polls once.
func (h *healthChecker) check(ctx context.Context, client healthpb.HealthClient) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	h.mu.Lock()
	name, pushes := h.name, h.pushes
	h.mu.Unlock()
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: name})
	if status.Code(err) == codes.NotFound && name != "" {
		h.mu.Lock()
		h.name = ""
		h.mu.Unlock()
		return h.check(ctx, client)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pushes != pushes {
		return nil // the Watch said more since: this answer is stale
	}
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		h.failedLocked(resp.GetStatus().String())
		return nil
	}
	h.failures = 0
	if h.successes++; h.successes >= h.cfg.HealthyThreshold {
		h.setLocked(true, "SERVING")
	}
	return nil
}

func (h *healthChecker) serviceName() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.name
}

func (h *healthChecker) failed(why string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failedLocked(why)
}

func (h *healthChecker) failedLocked(why string) {
	h.successes = 0
	if h.failures++; h.failures >= h.cfg.UnhealthyThreshold {
		h.setLocked(false, why)
	}
}

func (h *healthChecker) setLocked(healthy bool, why string) {
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
