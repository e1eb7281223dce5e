package routing

import (
	"math/rand/v2"

	"google.golang.org/grpc/balancer"
)

// leastRequest compares two distinct endpoints chosen at random and sends
// the call to the one with fewer calls in flight, the first on a tie
// (power of two choices, as grpc-go's least_request with choiceCount 2).
// No parameters.
type leastRequest struct{}

func (leastRequest) NewSelector(candidates []Candidate) Selector {
	return leastRequestSelector{candidates: candidates}
}

type leastRequestSelector struct {
	candidates []Candidate
}

func (s leastRequestSelector) Select(balancer.PickInfo) *Candidate {
	a, b := randomPair(s.candidates)
	if b.State.InFlight() < a.State.InFlight() {
		return b
	}
	return a
}

// randomPair returns two distinct candidates chosen at random, or the
// only one twice.
func randomPair(candidates []Candidate) (a, b *Candidate) {
	n := len(candidates)
	if n == 1 {
		return &candidates[0], &candidates[0]
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	return &candidates[i], &candidates[j]
}

var (
	_ Policy   = leastRequest{}
	_ Selector = leastRequestSelector{}
)
