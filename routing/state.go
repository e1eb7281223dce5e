package routing

import (
	"math"
	"sync/atomic"
	"time"
)

// LoadReport is what an endpoint last said about its load, from any
// source: the quaestor ReportLoad RPC, an ORCA out-of-band stream, or the
// ORCA trailer of a proxied call.
type LoadReport struct {
	// KnownLoadRate is the backend's own load figure when >= 0; negative
	// when it has none (then CurrentRequests/RequestCapacity is used).
	KnownLoadRate float64
	// Utilization is the host's CPU use, 0 to 1.
	Utilization float64
	// MemoryPercent is the host's memory use, 0 to 100.
	MemoryPercent float64
	// CurrentRequests and RequestCapacity are the backend's own counts;
	// 0 capacity means unknown.
	CurrentRequests, RequestCapacity int
	// QPS and EPS (errors per second) come from ORCA, for weights (gRFC
	// A58); 0 when not reported.
	QPS, EPS float64
	// Source names where the report came from ("report", "orca-oob",
	// "orca-call").
	Source string
	// Time is when quaestor received it.
	Time time.Time
}

// LoadRate returns the report's load as one figure: the known load rate,
// else current/capacity, else -1 (unknown).
func (r *LoadReport) LoadRate() float64 {
	switch {
	case r == nil:
		return -1
	case r.KnownLoadRate >= 0:
		return r.KnownLoadRate
	case r.RequestCapacity > 0:
		return float64(r.CurrentRequests) / float64(r.RequestCapacity)
	}
	return -1
}

// EndpointState is the live state of one endpoint of one service, shared
// by the table, the health checker, the load collector and the balancer.
// The table keeps one per service and address for as long as the address
// is listed, so its pointer is stable. Every field is atomic: reading it
// takes no lock, which keeps picks lock-free.
type EndpointState struct {
	service string
	addr    string
	// table is told of changes that re-rank the service; nil in tests of
	// policies alone.
	table *Table

	healthy      atomic.Bool  // active health checks say it serves
	ejectedUntil atomic.Int64 // passive health: unix nanoseconds
	ejections    atomic.Int32 // ejections in a row, for the growing time
	ejected      atomic.Int64 // ejections in all
	failures     atomic.Int32 // consecutive failed calls
	inFlight     atomic.Int64 // calls the proxy has on it now
	picks        atomic.Uint64
	latencyEWMA  atomic.Uint64 // float64 bits, nanoseconds
	load         atomic.Pointer[LoadReport]
}

func newEndpointState(service, addr string) *EndpointState {
	s := &EndpointState{service: service, addr: addr}
	// Healthy until a health check says otherwise: an endpoint is usable
	// as soon as it is listed, as with no health checking at all.
	s.healthy.Store(true)
	return s
}

// Healthy reports what the active health checks say.
func (s *EndpointState) Healthy() bool { return s.healthy.Load() }

// Ejected reports whether passive health has taken the endpoint out until
// some time after now.
func (s *EndpointState) Ejected(now time.Time) bool {
	return now.UnixNano() < s.ejectedUntil.Load()
}

// Available reports whether the endpoint may get new calls.
func (s *EndpointState) Available(now time.Time) bool {
	return s.Healthy() && !s.Ejected(now)
}

// Ejections counts the times passive health ejected the endpoint.
func (s *EndpointState) Ejections() int64 { return s.ejected.Load() }

// InFlight is the number of calls the proxy has on the endpoint now.
func (s *EndpointState) InFlight() int64 { return s.inFlight.Load() }

// Picks counts the calls placed on the endpoint.
func (s *EndpointState) Picks() uint64 { return s.picks.Load() }

// Load returns the latest load report, or nil.
func (s *EndpointState) Load() *LoadReport { return s.load.Load() }

// FreshLoad returns the latest load report if it is younger than maxAge,
// else nil.
func (s *EndpointState) FreshLoad(now time.Time, maxAge time.Duration) *LoadReport {
	r := s.load.Load()
	if r == nil || now.Sub(r.Time) > maxAge {
		return nil
	}
	return r
}

// LatencyEWMA is the moving average of call durations, 0 before the first
// call ended.
func (s *EndpointState) LatencyEWMA() time.Duration {
	return time.Duration(math.Float64frombits(s.latencyEWMA.Load()))
}

// Started counts a call placed on the endpoint; the caller calls Finished
// when it ends.
func (s *EndpointState) Started() {
	s.inFlight.Add(1)
	s.picks.Add(1)
}

// latencyWeight is the weight of one call's duration in the moving
// average (about the last 10 calls).
const latencyWeight = 0.1

// Finished counts the end of a call started with Started, and its
// duration.
func (s *EndpointState) Finished(d time.Duration) {
	s.inFlight.Add(-1)
	for {
		old := s.latencyEWMA.Load()
		avg := math.Float64frombits(old)
		next := float64(d)
		if avg != 0 {
			next = avg + latencyWeight*(float64(d)-avg)
		}
		if s.latencyEWMA.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// SetLoad records a load report, re-ranking the service when it changes
// the endpoint's rank.
func (s *EndpointState) SetLoad(r *LoadReport) { s.setLoad(r) }

// SetHealthy records what the active health checks say, and re-ranks the
// service when it changes.
func (s *EndpointState) SetHealthy(healthy bool) {
	if s.healthy.Swap(healthy) != healthy && s.table != nil {
		s.table.Changed(s.service)
	}
}

// Service and Addr identify the endpoint.
func (s *EndpointState) Service() string { return s.service }

// Addr is the endpoint's address.
func (s *EndpointState) Addr() string { return s.addr }
