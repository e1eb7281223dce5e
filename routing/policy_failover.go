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
	first := &candidates[0]
	for i := range candidates[1:] {
		if c := &candidates[i+1]; comparePriority(c, first) < 0 {
			first = c
		}
	}
	return failoverSelector{first: first}
}

// comparePriority orders candidates for failover.
func comparePriority(a, b *Candidate) int {
	pa, okA := priority(a)
	pb, okB := priority(b)
	switch {
	case okA && !okB:
		return -1
	case !okA && okB:
		return 1
	}
	if c := cmp.Compare(pa, pb); c != 0 {
		return c
	}
	return cmp.Compare(a.Addr, b.Addr)
}

// priority parses the "priority" metadata; ok is false when it is missing
// or not an integer.
func priority(c *Candidate) (p int, ok bool) {
	v, found := c.Metadata[priorityKey]
	if !found {
		return 0, false
	}
	p, err := strconv.Atoi(v)
	if err != nil {
		return 0, false
	}
	return p, true
}

type failoverSelector struct {
	first *Candidate
}

func (s failoverSelector) Select(balancer.PickInfo) *Candidate { return s.first }

var (
	_ Policy   = failover{}
	_ Selector = failoverSelector{}
)
