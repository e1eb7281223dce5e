package main

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, like HdrHistogram: each power-of-two range of
// nanoseconds [2^e, 2^(e+1)) is split into subBuckets equal buckets, so a
// bucket is never wider than 1/subBuckets of its values (0.8 %), and
// reporting its midpoint is within 0.4 % of every value in it. Values below
// subBuckets nanoseconds are counted exactly.
const (
	subBucketBits = 7
	subBuckets    = 1 << subBucketBits
	// maxExponent bounds the recorded values to 2^maxExponent ns (about
	// 18 minutes); longer ones are counted in the last bucket. Calls are
	// bounded far below that by -call-timeout.
	maxExponent = 40
	numBuckets  = subBuckets + (maxExponent-subBucketBits)*subBuckets
)

// histogram counts durations. It is owned by one goroutine (a load worker)
// and merged into a total once the workers are done, so recording is a
// plain increment with no lock or atomic.
type histogram struct {
	counts [numBuckets]uint64
	total  uint64
	min    time.Duration
	max    time.Duration
}

func newHistogram() *histogram {
	return &histogram{min: math.MaxInt64}
}

// record counts one duration; negative ones count as 0.
func (h *histogram) record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(d)]++
	h.total++
	h.min = min(h.min, d)
	h.max = max(h.max, d)
}

// merge adds the counts of other to h.
func (h *histogram) merge(other *histogram) {
	for i, n := range other.counts {
		h.counts[i] += n
	}
	h.total += other.total
	h.min = min(h.min, other.min)
	h.max = max(h.max, other.max)
}

// count returns the number of recorded durations.
func (h *histogram) count() uint64 { return h.total }

// quantile returns the duration below or at which a fraction q (0 to 1) of
// the recorded ones lie, to within 0.4 %: the smallest and the largest are
// exact. It returns 0 for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	switch {
	case rank <= 1:
		return h.min
	case rank >= h.total:
		return h.max
	}
	var seen uint64
	for i, n := range h.counts {
		seen += n
		if seen >= rank {
			return min(max(bucketMidpoint(i), h.min), h.max)
		}
	}
	return h.max
}

// bucketOf returns the index of the bucket that counts d.
func bucketOf(d time.Duration) int {
	v := uint64(d)
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - 1 // v is in [2^exp, 2^(exp+1))
	if exp >= maxExponent {
		return numBuckets - 1
	}
	shift := exp - subBucketBits
	sub := int(v>>shift) - subBuckets // 0 to subBuckets-1
	return subBuckets + shift*subBuckets + sub
}

// bucketMidpoint returns the middle of the values bucket i counts.
func bucketMidpoint(i int) time.Duration {
	if i < subBuckets {
		return time.Duration(i)
	}
	shift := (i - subBuckets) / subBuckets
	sub := (i - subBuckets) % subBuckets
	low := uint64(subBuckets+sub) << shift
	width := uint64(1) << shift
	return time.Duration(low + width/2)
}
