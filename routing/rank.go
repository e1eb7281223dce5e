package routing

import (
	"math"
	"slices"
	"time"
)

// Ranked returns the endpoints of service that may get calls now (healthy,
// not ejected), least loaded first, in the order of the least-loaded
// policy: load rate (the known rate, else current/capacity; none counts as
// 0), then host load, both to the percent, then calls in flight per
// capacity, then address. Reports older than maxAge are ignored. known is
// false when no source lists the service.
func (t *Table) Ranked(service string, maxAge time.Duration) (eps []Endpoint, known bool) {
	listed, known := t.Endpoints(service)
	now := time.Now()
	eps = slices.DeleteFunc(listed, func(ep Endpoint) bool { return !ep.State.Available(now) })
	type ranked struct {
		ep   Endpoint
		key  [2]int64
		busy float64
	}
	rs := make([]ranked, len(eps))
	for i, ep := range eps {
		report := ep.State.FreshLoad(now, maxAge)
		rate, util := 0.0, 0.0
		capacity := 0
		if report != nil {
			rate, util, capacity = max(report.LoadRate(), 0), report.Utilization, report.RequestCapacity
		}
		busy := float64(ep.State.InFlight())
		if capacity > 0 {
			busy /= float64(capacity)
		}
		rs[i] = ranked{ep: ep, key: [2]int64{int64(math.Round(rate * 100)), int64(math.Round(util * 100))}, busy: busy}
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		switch {
		case a.key[0] != b.key[0]:
			return int(a.key[0] - b.key[0])
		case a.key[1] != b.key[1]:
			return int(a.key[1] - b.key[1])
		case a.busy < b.busy:
			return -1
		case a.busy > b.busy:
			return 1
		}
		return 0
	})
	for i := range rs {
		eps[i] = rs[i].ep
	}
	return eps, known
}
