package routing

import (
	"math/rand/v2"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
)

// roundRobin sends each call to the next ready endpoint in address order.
// Each selector starts at a random endpoint, so that rebuilding it when the
// ready set changes does not favour the first one. No parameters.
type roundRobin struct{}

func (roundRobin) NewSelector(candidates []Candidate) Selector {
	s := &roundRobinSelector{candidates: candidates}
	s.next.Store(rand.Uint64())
	return s
}

type roundRobinSelector struct {
	candidates []Candidate
	next       atomic.Uint64
}

func (s *roundRobinSelector) Select(balancer.PickInfo) *Candidate {
	return &s.candidates[s.next.Add(1)%uint64(len(s.candidates))]
}

var (
	_ Policy   = roundRobin{}
	_ Selector = (*roundRobinSelector)(nil)
)
