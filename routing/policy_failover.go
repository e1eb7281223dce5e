package routing

import (
	"cmp"
	"strconv"

	"google.golang.org/grpc/balancer"
)

// failover sends every call to the first endpoint in priority order, and
// to the next only when the first is not ready (the candidates hold only
// available endpoints, so the first of them is the first available).
//
// The order is the "priority" metadata as an integer, lowest first;
// endpoints without one (or with one that is not an integer) come after
// all numbered ones. Ties go by address. No parameters.
type failover struct{}

// priorityKey is the metadata key of an endpoint's failover priority.
const priorityKey = "priority"

func (failover) NewSelector(candidates []Candidate) Selector {
	first, firstRank := &candidates[0], failoverRankOf(&candidates[0])
	for i := range candidates[1:] {
		c := &candidates[i+1]
		if rank := failoverRankOf(c); compareFailoverRanks(rank, firstRank) < 0 {
			first, firstRank = c, rank
		}
	}
	return failoverSelector{first: first}
}

// failoverRank is what orders a candidate for failover.
type failoverRank struct {
	numbered bool // has an integer priority
	priority int
	addr     string
}

func failoverRankOf(c *Candidate) failoverRank {
	r := failoverRank{addr: c.Addr}
	if v, ok := c.Metadata[priorityKey]; ok {
		p, err := strconv.Atoi(v)
		r.numbered, r.priority = err == nil, p
	}
	return r
}

func compareFailoverRanks(a, b failoverRank) int {
	switch {
	case a.numbered && !b.numbered:
		return -1
	case !a.numbered && b.numbered:
		return 1
	case a.numbered:
		if c := cmp.Compare(a.priority, b.priority); c != 0 {
			return c
		}
	}
	return cmp.Compare(a.addr, b.addr)
}

type failoverSelector struct {
	first *Candidate
}

func (s failoverSelector) Select(balancer.PickInfo) *Candidate { return s.first }

var (
	_ Policy   = failover{}
	_ Selector = failoverSelector{}
)
