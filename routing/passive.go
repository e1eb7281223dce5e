package routing

import (
	"log/slog"
	"math"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/quaestor-go/quaestor/loadreport"
)

// PassiveHealth configures ejection on failed calls (passive health
// checking): the proxy's own calls are the probes.
type PassiveHealth struct {
	// Failures is how many calls in a row must fail with UNAVAILABLE
	// (refused or broken connections, or the backend saying so) before
	// the endpoint is ejected. 0 turns ejection off. Default 5.
	Failures int
	// EjectTime is the first ejection's length; each further ejection in a
	// row doubles it, up to MaxEjectTime. Defaults 10s and 5m.
	EjectTime, MaxEjectTime time.Duration
}

// DefaultPassiveHealth returns the defaults.
func DefaultPassiveHealth() PassiveHealth {
	return PassiveHealth{Failures: 5, EjectTime: 10 * time.Second, MaxEjectTime: 5 * time.Minute}
}

// SetPassiveHealth sets how failing endpoints are ejected, and where
// ejections are logged. Until it is called, DefaultPassiveHealth applies.
func (t *Table) SetPassiveHealth(cfg PassiveHealth, logger *slog.Logger) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.passive = cfg
	t.logger = logger
}

// recordResult counts a finished call for passive health: UNAVAILABLE is a
// failure; a call cancelled or timed out by its client says nothing of the
// endpoint; anything else is a success.
func (s *EndpointState) recordResult(err error) {
	switch status.Code(err) {
	case codes.Unavailable:
		if n := s.failures.Add(1); s.table != nil {
			s.table.maybeEject(s, int(n))
		}
	case codes.Canceled, codes.DeadlineExceeded:
	default:
		// Load first: most calls succeed, and a store on every one would
		// bounce the cache line between the CPUs making calls.
		if s.failures.Load() != 0 {
			s.failures.Store(0)
		}
		if s.ejections.Load() != 0 && !s.Ejected(time.Now()) {
			s.ejections.Store(0)
		}
	}
}

// maybeEject ejects s after enough failures, unless it is the last
// available endpoint of its service: a proxy with one failing endpoint
// still tries it rather than fail every call at once.
func (t *Table) maybeEject(s *EndpointState, failures int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cfg := t.passive
	if cfg.Failures <= 0 || failures < cfg.Failures {
		return
	}
	now := time.Now()
	if !s.Available(now) {
		return
	}
	available := 0
	for _, other := range t.states[s.service] {
		if other.Available(now) {
			available++
		}
	}
	if available <= 1 {
		return
	}
	n := s.ejections.Add(1)
	s.ejected.Add(1)
	d := time.Duration(float64(cfg.EjectTime) * math.Pow(2, float64(n-1)))
	if d > cfg.MaxEjectTime || d <= 0 {
		d = cfg.MaxEjectTime
	}
	s.ejectedUntil.Store(now.Add(d).UnixNano())
	s.failures.Store(0)
	if t.logger != nil {
		t.logger.Warn("routing: endpoint ejected after failed calls", "service", s.service, "addr", s.addr,
			"failures", failures, "for", d, "ejections_in_a_row", n)
	}
	t.notifyLocked(s.service)
	// Bring it back when the time is up.
	time.AfterFunc(d, func() { t.Changed(s.service) })
}

// recordORCA records an ORCA report as the endpoint's load.
func (s *EndpointState) recordORCA(r *v3orcapb.OrcaLoadReport, source string) {
	known := -1.0
	if r.GetApplicationUtilization() > 0 {
		known = r.GetApplicationUtilization()
	}
	// The loadreport library adds the request counts as named metrics.
	named := r.GetNamedMetrics()
	s.setLoad(&LoadReport{
		KnownLoadRate:   known,
		Utilization:     r.GetCpuUtilization(),
		MemoryPercent:   r.GetMemUtilization() * 100,
		CurrentRequests: int(named[loadreport.CurrentRequestsMetric]),
		RequestCapacity: int(named[loadreport.RequestCapacityMetric]),
		QPS:             r.GetRpsFractional(),
		EPS:             r.GetEps(),
		Source:          source,
		Time:            time.Now(),
	})
}

// setLoad records a report and, when it changes the endpoint's rank (its
// load rate or host load by a percent or more), tells the table so that
// the balancer ranks again.
func (s *EndpointState) setLoad(r *LoadReport) {
	old := s.load.Swap(r)
	if s.table != nil && rankKey(old) != rankKey(r) {
		s.table.Changed(s.service)
	}
}

// rankKey quantizes what ranks an endpoint: load rate and host load to
// whole percents, and the request rate (for weights) to about 10 %.
func rankKey(r *LoadReport) [3]int64 {
	if r == nil {
		return [3]int64{-1, -1, -1}
	}
	return [3]int64{
		int64(math.Round(r.LoadRate() * 100)),
		int64(math.Round(r.Utilization * 100)),
		int64(math.Round(math.Log1p(max(r.QPS, 0)) * 10)),
	}
}
