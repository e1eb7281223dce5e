package routing

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/balancer"
)

// weightedRoundRobin sends calls to the endpoints in proportion to their
// weights, interleaved rather than in runs.
//
// An endpoint's weight is its "weight" metadata when that is a positive
// number. Otherwise it is derived from a fresh ORCA report as in gRFC A58:
// qps / (utilization + eps/qps × errorUtilizationPenalty), when the report
// has both QPS and utilization. Endpoints with neither weigh the mean of
// the others' weights, or 1 when no endpoint has one.
//
// The weights are turned into a static schedule when the selector is
// built, of at most maxScheduleSlots slots (plus one per endpoint whose
// weight rounds to none: every endpoint gets at least one slot), and each
// call takes the next slot.
//
// maxAge is how old an ORCA report may be and still give a weight; older
// ones are ignored. Default (0): [DefaultLoadMaxAge].
type weightedRoundRobin struct {
	maxAge time.Duration
}

const (
	// errorUtilizationPenalty is gRFC A58's error_utilization_penalty, its
	// default: errors count as utilization in proportion to eps/qps.
	errorUtilizationPenalty = 1.0
	// maxScheduleSlots bounds the schedule's length: weights are kept
	// within about 1/maxScheduleSlots of the total.
	maxScheduleSlots = 4096
	// weightKey is the metadata key of an endpoint's static weight.
	weightKey = "weight"
)

func (p weightedRoundRobin) NewSelector(candidates []Candidate) Selector {
	return p.newSelector(candidates, time.Now())
}

// newSelector weighs candidates with the reports fresh at now.
func (p weightedRoundRobin) newSelector(candidates []Candidate, now time.Time) *weightedRoundRobinSelector {
	weights := p.weights(candidates, now)
	s := &weightedRoundRobinSelector{candidates: candidates, schedule: newSchedule(weights)}
	s.next.Store(rand.Uint64())
	return s
}

// weights returns each candidate's weight, all positive.
func (p weightedRoundRobin) weights(candidates []Candidate, now time.Time) []float64 {
	maxAge := cmp.Or(p.maxAge, DefaultLoadMaxAge)
	weights := make([]float64, len(candidates))
	var sum float64
	var known int
	for i := range candidates {
		w, ok := staticWeight(candidates[i].Metadata)
		if !ok {
			w, ok = reportedWeight(candidates[i].State.FreshLoad(now, maxAge))
		}
		if ok {
			weights[i] = w
			sum += w
			known++
		}
	}
	mean := 1.0
	if known > 0 {
		mean = sum / float64(known)
	}
	for i, w := range weights {
		if w == 0 {
			weights[i] = mean
		}
	}
	return weights
}

// staticWeight parses the "weight" metadata; ok is false when it is
// missing or not a positive finite number.
func staticWeight(metadata map[string]string) (w float64, ok bool) {
	v, found := metadata[weightKey]
	if !found {
		return 0, false
	}
	w, err := strconv.ParseFloat(v, 64)
	if err != nil || !(w > 0) || math.IsInf(w, 1) {
		return 0, false
	}
	return w, true
}

// reportedWeight derives a weight from an ORCA report as gRFC A58 does;
// ok is false when the report lacks QPS or utilization.
func reportedWeight(r *LoadReport) (w float64, ok bool) {
	if r == nil || !(r.QPS > 0) || !(r.Utilization > 0) {
		return 0, false
	}
	utilization := r.Utilization
	if r.EPS > 0 {
		utilization += r.EPS / r.QPS * errorUtilizationPenalty
	}
	w = r.QPS / utilization
	if math.IsInf(w, 1) || math.IsNaN(w) {
		return 0, false
	}
	return w, true
}

// newSchedule returns the candidate index of every slot of one round.
// Each candidate gets slots in proportion to its weight (at least one),
// spread over the round in earliest-deadline-first order: the k-th of a
// candidate's c slots is due at (k+½)/c of the round.
func newSchedule(weights []float64) []int32 {
	counts := slotCounts(weights)
	type slot struct {
		index int32
		k     int64 // the candidate's k-th slot, due at (2k+1)/(2·count)
	}
	var total int64
	for _, c := range counts {
		total += c
	}
	slots := make([]slot, 0, total)
	for i := range counts {
		for k := range counts[i] {
			slots = append(slots, slot{index: int32(i), k: k})
		}
	}
	slices.SortFunc(slots, func(a, b slot) int {
		// (2a.k+1)/counts[a] vs (2b.k+1)/counts[b], without division.
		if c := cmp.Compare((2*a.k+1)*counts[b.index], (2*b.k+1)*counts[a.index]); c != 0 {
			return c
		}
		return cmp.Compare(a.index, b.index)
	})
	schedule := make([]int32, len(slots))
	for i, s := range slots {
		schedule[i] = s.index
	}
	return schedule
}

// slotCounts returns how many slots of a round each weight gets: the
// weights themselves when they are multiples of the smallest that fit in
// maxScheduleSlots (1:1:4 gives a round of 6), else the weights scaled to
// maxScheduleSlots in all, at least one each, divided by their greatest
// common divisor.
func slotCounts(weights []float64) []int64 {
	counts := make([]int64, len(weights))
	least, total := slices.Min(weights), 0.0
	for _, w := range weights {
		total += w
	}
	if total/least <= maxScheduleSlots {
		exact := true
		for i, w := range weights {
			ratio := w / least
			counts[i] = int64(math.Round(ratio))
			exact = exact && math.Abs(ratio-float64(counts[i])) < 1e-9
		}
		if exact {
			return reduceCounts(counts)
		}
	}
	scale := maxScheduleSlots / total
	for i, w := range weights {
		counts[i] = max(1, int64(math.Round(w*scale)))
	}
	return reduceCounts(counts)
}

// reduceCounts divides counts by their greatest common divisor: equal weights
// make a round of one slot each, plain round robin.
func reduceCounts(counts []int64) []int64 {
	var divisor int64
	for _, c := range counts {
		divisor = gcd(divisor, c)
	}
	for i := range counts {
		counts[i] /= divisor
	}
	return counts
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

type weightedRoundRobinSelector struct {
	candidates []Candidate
	// schedule holds indexes into candidates.
	schedule []int32
	next     atomic.Uint64
}

func (s *weightedRoundRobinSelector) Select(balancer.PickInfo) *Candidate {
	return &s.candidates[s.schedule[s.next.Add(1)%uint64(len(s.schedule))]]
}

var (
	_ Policy   = weightedRoundRobin{}
	_ Selector = (*weightedRoundRobinSelector)(nil)
)
