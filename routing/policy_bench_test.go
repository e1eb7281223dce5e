package routing

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
)

// benchSizes are the numbers of candidates the policy benchmarks run with.
var benchSizes = []int{1, 10, 100, 1000}

// benchCandidates returns n candidates with fresh, varied loads and
// weights, a few calls in flight, and a latency each.
func benchCandidates(n int) []Candidate {
	candidates := numberedCandidates(n)
	now := time.Now()
	for i := range candidates {
		c := &candidates[i]
		c.Metadata = map[string]string{weightKey: strconv.Itoa(1 + i%5), priorityKey: strconv.Itoa(i % 3)}
		c.State.SetLoad(&LoadReport{
			KnownLoadRate: float64(i%4) / 10,
			Utilization:   float64(i%7) / 10,
			QPS:           100,
			Time:          now,
		})
		for range i % 3 {
			c.State.Started()
		}
		c.State.Started()
		c.State.Finished(time.Duration(1+i%10) * time.Millisecond)
	}
	return candidates
}

// BenchmarkSelect measures one Select per op, from parallel goroutines,
// each call with its own hash key value.
func BenchmarkSelect(b *testing.B) {
	for _, name := range Policies() {
		policy, err := NewPolicy(name, PolicyConfig{HashKey: testHashKey})
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				sel := policy.NewSelector(benchCandidates(n))
				infos := make([]balancer.PickInfo, 64)
				for i := range infos {
					infos[i] = pickInfo(context.Background(), testHashKey, fmt.Sprint("session-", i))
				}
				var goroutine atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := int(goroutine.Add(1))
					for pb.Next() {
						sel.Select(infos[i%len(infos)])
						i++
					}
				})
			})
		}
	}
}

// BenchmarkNewSelector measures building a selector, which happens on
// every change of the ready set or of a rank.
func BenchmarkNewSelector(b *testing.B) {
	for _, name := range Policies() {
		policy, err := NewPolicy(name, PolicyConfig{HashKey: testHashKey})
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/n=%d", name, n), func(b *testing.B) {
				candidates := benchCandidates(n)
				b.ReportAllocs()
				for b.Loop() {
					policy.NewSelector(candidates)
				}
			})
		}
	}
}
