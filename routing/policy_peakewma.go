package routing

import (
	"time"

	"google.golang.org/grpc/balancer"
)

// peakEWMA compares two distinct endpoints chosen at random by their
// expected wait, as linkerd does: the moving average of their call
// durations times (calls in flight + 1). The call goes to the lower, the
// first on a tie. An endpoint that has not finished a call yet counts
// untriedLatency, low, so that new endpoints are tried. No parameters.
type peakEWMA struct{}

// untriedLatency is the latency assumed of an endpoint without one.
const untriedLatency = time.Millisecond

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
	latency := c.State.LatencyEWMA()
	if latency <= 0 {
		latency = untriedLatency
	}
	return float64(latency) * float64(c.State.InFlight()+1)
}

var (
	_ Policy   = peakEWMA{}
	_ Selector = peakEWMASelector{}
)
