package routing

import (
	"slices"
	"time"
)

// rankedTTL bounds how long a ranking is reused: reports age out of
// maxAge without a change to tell of it.
const rankedTTL = 250 * time.Millisecond

// rankedCache is a service's last ranking, dropped on every change of the
// service.
type rankedCache struct {
	eps    []Endpoint
	maxAge time.Duration
	at     time.Time
}

// Ranked returns the endpoints of service that may get calls now (healthy,
// not ejected), least loaded first, in the order of the least-loaded
// policy: load rate (the known rate, else current/capacity; none counts as
// 0) to the percent, then host load in hostLoadStep steps, then calls in
// flight per capacity, then address. Reports older than maxAge are ignored. known is
// false when no source lists the service. The ranking is kept until the
// service changes, for at most rankedTTL, so that look-aside discovery
// costs a lookup; the returned slice is shared and must not be modified.
func (t *Table) Ranked(service string, maxAge time.Duration) (eps []Endpoint, known bool) {
	now := time.Now()
	t.mu.Lock()
	c, cached := t.ranked[service]
	_, known = t.services[service]
	t.mu.Unlock()
	if cached && c.maxAge == maxAge && now.Sub(c.at) < rankedTTL {
		return c.eps, known
	}
	eps, known = t.rank(service, maxAge, now)
	t.mu.Lock()
	t.ranked[service] = &rankedCache{eps: eps, maxAge: maxAge, at: now}
	t.mu.Unlock()
	return eps, known
}

func (t *Table) rank(service string, maxAge time.Duration, now time.Time) (eps []Endpoint, known bool) {
	listed, known := t.Endpoints(service)
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
		rs[i] = ranked{ep: ep, key: [2]int64{loadPercent(rate), loadPercent(util) / hostLoadStep}, busy: busy}
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
