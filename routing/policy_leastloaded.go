package routing

import (
	"cmp"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
)

// leastLoaded is quaestor's default policy: each call goes to the least
// loaded endpoint, ranked by its latest fresh load report.
//
// Endpoints are ranked first by load rate ([LoadReport.LoadRate]: the
// backend's own figure, else current/capacity), quantized to whole
// percents, then by host utilization in steps of hostLoadStep percent, so
// that near-equal figures tie: instances sharing a machine report the same
// host load, sampled at slightly different moments, and that noise must not
// rank them. An
// endpoint without a fresh report, or whose report has no rate, ranks with
// a rate of 0, as an idle new instance would. The endpoints sharing the
// best rank form the best tier.
//
// Calls go round robin over the best tier, each choice compared with the
// next member of the tier: the one with fewer calls in flight for its
// capacity wins, so the tier evens out when some calls run longer than
// others. When the tier has one endpoint it is compared instead with the
// next best endpoint, by rate + in flight/capacity, so that a burst of
// calls between two reports spreads to the next best endpoint instead of
// piling on one. The capacity is the report's RequestCapacity; when it is
// unknown an endpoint counts as taking assumedCapacity calls.
//
// maxAge is how old a report may be and still rank an endpoint; older
// ones are ignored. Default (0): [DefaultLoadMaxAge].
type leastLoaded struct {
	maxAge time.Duration
}

// assumedCapacity is the capacity of an endpoint whose report does not
// say: one call in flight weighs as 1% of load.
const assumedCapacity = 100

func (p leastLoaded) NewSelector(candidates []Candidate) Selector {
	return p.newSelector(candidates, time.Now())
}

// newSelector ranks candidates by their reports fresh at now.
func (p leastLoaded) newSelector(candidates []Candidate, now time.Time) *leastLoadedSelector {
	maxAge := cmp.Or(p.maxAge, DefaultLoadMaxAge)
	ranked := make([]loadRank, len(candidates))
	for i := range candidates {
		ranked[i] = newLoadRank(&candidates[i], now, maxAge)
	}
	s := &leastLoadedSelector{
		tier: bestTier(ranked, func(r *loadRank) bool { return true }),
	}
	if len(s.tier) == 1 {
		best := s.tier[0].key
		s.runnersUp = bestTier(ranked, func(r *loadRank) bool { return r.key != best })
	}
	// A selector lives until the next report changes a rank; starting
	// every one at the first endpoint would favour it.
	s.next.Store(rand.Uint64())
	return s
}

// loadRank is what leastLoaded knows of one candidate.
type loadRank struct {
	candidate *Candidate
	// key is the quantized (rate, utilization), compared in that order.
	key [2]int64
	// rate is key[0] as a fraction, for the live score.
	rate float64
	// capacity is the report's RequestCapacity, or assumedCapacity.
	capacity float64
}

func newLoadRank(c *Candidate, now time.Time, maxAge time.Duration) loadRank {
	r := loadRank{candidate: c, capacity: assumedCapacity}
	if report := c.State.FreshLoad(now, maxAge); report != nil {
		r.key = [2]int64{loadPercent(report.LoadRate()), loadPercent(report.Utilization) / hostLoadStep}
		if report.RequestCapacity > 0 {
			r.capacity = float64(report.RequestCapacity)
		}
	}
	r.rate = float64(r.key[0]) / 100
	return r
}

// hostLoadStep is the width, in percent, of the host-load steps that rank
// endpoints of equal load rate.
const hostLoadStep = 5

// loadPercent quantizes a fraction to whole percents; unknown (negative) and
// NaN count as 0.
func loadPercent(f float64) int64 {
	if !(f > 0) {
		return 0
	}
	// Caps absurd figures (and +Inf) well inside int64.
	return int64(math.Round(min(f, 1e9) * 100))
}

// bestTier returns the ranks among those kept that share the lowest key.
func bestTier(ranked []loadRank, keep func(*loadRank) bool) []loadRank {
	var tier []loadRank
	for i := range ranked {
		r := &ranked[i]
		if !keep(r) {
			continue
		}
		if len(tier) > 0 {
			switch compareLoadKeys(r.key, tier[0].key) {
			case 1:
				continue
			case -1:
				tier = tier[:0]
			}
		}
		tier = append(tier, *r)
	}
	return tier
}

func compareLoadKeys(a, b [2]int64) int {
	if c := cmp.Compare(a[0], b[0]); c != 0 {
		return c
	}
	return cmp.Compare(a[1], b[1])
}

// inFlightShare is the calls in flight on the endpoint now, as a fraction
// of its capacity.
func (r *loadRank) inFlightShare() float64 {
	return float64(r.candidate.State.InFlight()) / r.capacity
}

// liveScore estimates the endpoint's load rate now: the reported rate
// plus what the calls in flight add to it.
func (r *loadRank) liveScore() float64 {
	return r.rate + r.inFlightShare()
}

type leastLoadedSelector struct {
	// tier holds the best ranked candidates, in address order; never
	// empty.
	tier []loadRank
	// runnersUp holds the next best tier when tier has one candidate
	// (empty when there is no other candidate); nil otherwise.
	runnersUp []loadRank
	next      atomic.Uint64
}

func (s *leastLoadedSelector) Select(balancer.PickInfo) *Candidate {
	n := s.next.Add(1)
	if len(s.tier) > 1 {
		size := uint64(len(s.tier))
		turn, other := &s.tier[n%size], &s.tier[(n+1)%size]
		if other.inFlightShare() < turn.inFlightShare() {
			return other.candidate
		}
		return turn.candidate
	}
	best := &s.tier[0]
	if len(s.runnersUp) == 0 {
		return best.candidate
	}
	other := &s.runnersUp[n%uint64(len(s.runnersUp))]
	if other.liveScore() < best.liveScore() {
		return other.candidate
	}
	return best.candidate
}

var (
	_ Policy   = leastLoaded{}
	_ Selector = (*leastLoadedSelector)(nil)
)
