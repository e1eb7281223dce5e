package proxy

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthServer is the proxy's own grpc.health.v1.Health. It differs from
// grpc-go's health.Server in one way that matters for draining: once the
// proxy drains, each Watch stream is sent NOT_SERVING and then ended, so
// that health watchers do not hold the graceful stop open until its
// timeout.
type healthServer struct {
	healthpb.UnimplementedHealthServer

	mu       sync.Mutex
	statuses map[string]healthpb.HealthCheckResponse_ServingStatus
	changed  chan struct{} // closed and replaced on every change
	draining bool
}

func newHealthServer(services ...string) *healthServer {
	h := &healthServer{
		statuses: make(map[string]healthpb.HealthCheckResponse_ServingStatus),
		changed:  make(chan struct{}),
	}
	for _, s := range append([]string{""}, services...) {
		h.statuses[s] = healthpb.HealthCheckResponse_SERVING
	}
	return h
}

// drain turns every service NOT_SERVING for good and ends the watches.
func (h *healthServer) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.statuses {
		h.statuses[s] = healthpb.HealthCheckResponse_NOT_SERVING
	}
	h.draining = true
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *healthServer) current(service string) (st healthpb.HealthCheckResponse_ServingStatus, known, draining bool, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, known = h.statuses[service]
	return st, known, h.draining, h.changed
}

func (h *healthServer) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, known, _, _ := h.current(req.GetService())
	if !known {
		return nil, status.Errorf(codes.NotFound, "quaestor: the proxy has no health status for service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

func (h *healthServer) List(context.Context, *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	resp := &healthpb.HealthListResponse{Statuses: make(map[string]*healthpb.HealthCheckResponse, len(h.statuses))}
	for s, st := range h.statuses {
		resp.Statuses[s] = &healthpb.HealthCheckResponse{Status: st}
	}
	return resp, nil
}

func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		st, known, draining, changed := h.current(req.GetService())
		if !known {
			st = healthpb.HealthCheckResponse_SERVICE_UNKNOWN
		}
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		if draining {
			return nil
		}
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-changed:
		}
	}
}
