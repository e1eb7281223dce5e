package routing

import (
	"time"

	"google.golang.org/grpc/balancer"
)

// peakEWMA compares two distinct endpoints chosen at random by their
// expected wait, as linkerd and Finagle do: the moving average of their
// call durations times (calls in flight + 1). The call goes to the lower,
// the first on a tie.
//
// An endpoint that has not finished a call yet has no latency: while it
// has no call either it costs nothing, so that new endpoints are tried at
// once; while its first calls are in flight it counts untriedLatency, so
// that it is not flooded before one of them has returned. No parameters.
type peakEWMA struct{}

// untriedLatency is the latency assumed of an endpoint whose first calls
// are still in flight: high, as their answer may be slow in coming.
const untriedLatency = time.Second

func (peakEWMA) NewSelector(candidates []Candidate) Selector {
	return peakEWMASelector{candidates: candidates}
}

type peakEWMASelector struct {
	candidates []Candidate
}

func (s peakEWMASelector) Select(balancer.PickInfo) *Candidate {
	a, b := randomPair(s.candidates)
	if expectedWait(b) < expectedWait(a) {
		return b
	}
	return a
}

// expectedWait is the candidate's cost: latency × (in flight + 1).
func expectedWait(c *Candidate) float64 {
	latency, inFlight := c.State.LatencyEWMA(), c.State.InFlight()
	if latency <= 0 {
		if inFlight == 0 {
			return 0
		}
		latency = untriedLatency
	}
	return float64(latency) * float64(inFlight+1)
}

var (
	_ Policy   = peakEWMA{}
	_ Selector = peakEWMASelector{}
)
