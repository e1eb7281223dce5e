package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// The open loop offers calls at a fixed rate, whatever the target does
// with them: call i is due at start + i/rate. Its latency runs from that
// intended time, not from when it could be sent, so a target that stalls
// is charged for every call that waited behind the stall (no coordinated
// omission, as wrk2 and HdrHistogram describe it). It is unary-16's call
// (100-byte payload echoed back) over 4 connections.

// openLoopSettings bound one open-loop measurement.
type openLoopSettings struct {
	warmup      time.Duration // at the same rate, unrecorded
	duration    time.Duration // calls are offered for this long
	callTimeout time.Duration
	// maxInFlight is the number of senders: calls due while all are busy
	// wait for one (and that wait counts in their latency).
	maxInFlight int
	conns       int
	payloadSize int
}

// dueAt returns when call i (from 0) of an open loop at rate calls/s that
// starts at start is due.
func dueAt(start time.Time, rate float64, i int) time.Time {
	return start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
}

// callsIn returns how many calls an open loop at rate offers in d.
func callsIn(rate float64, d time.Duration) int {
	return int(rate * d.Seconds())
}

// measureOpenLoop offers rate calls/s to the target and returns what it
// saw: calls, errors, and latency from each call's intended time.
func measureOpenLoop(ctx context.Context, t *target, rate float64, settings openLoopSettings) (*result, error) {
	if rate <= 0 {
		return nil, fmt.Errorf("open loop: rate %g, want more than 0", rate)
	}
	clients := make([]examplev1.EchoClient, settings.conns)
	for i := range clients {
		addr := t.addrs[i%len(t.addrs)]
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, fmt.Errorf("open loop: connecting to %s: %w", addr, err)
		}
		defer cc.Close()
		clients[i] = examplev1.NewEchoClient(cc)
	}
	if settings.warmup > 0 {
		runOpenLoop(ctx, clients, rate, settings.warmup, settings)
	}
	res := runOpenLoop(ctx, clients, rate, settings.duration, settings)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open loop: %w", err)
	}
	if err := t.procExit(); err != nil {
		return nil, err
	}
	return res, nil
}

// runOpenLoop offers calls at rate for duration: a pacer hands each
// call's intended time to maxInFlight senders. It returns once every call
// has ended.
func runOpenLoop(ctx context.Context, clients []examplev1.EchoClient, rate float64, duration time.Duration, settings openLoopSettings) *result {
	n := callsIn(rate, duration)
	due := make(chan time.Time, 1024)
	// Senders record into a few shared shards rather than a result each:
	// a histogram is 35 KB, and a thousand of them per measurement would
	// make the load generator's garbage the thing measured.
	shards := make([]*lockedResult, openLoopShards)
	for i := range shards {
		shards[i] = &lockedResult{res: newResult()}
	}
	req := &examplev1.EchoRequest{Payload: make([]byte, settings.payloadSize)}
	var wg sync.WaitGroup
	for i := range max(settings.maxInFlight, 1) {
		shard := shards[i%len(shards)]
		client := clients[i%len(clients)]
		wg.Go(func() {
			for intended := range due {
				callCtx, cancel := context.WithDeadline(ctx, intended.Add(settings.callTimeout))
				resp, err := client.Unary(callCtx, req)
				cancel()
				latency := time.Since(intended)
				if err == nil && len(resp.GetPayload()) != len(req.GetPayload()) {
					err = errors.New("unary: wrong payload size back")
				}
				shard.record(latency, err)
			}
		})
	}
	start := time.Now()
	pace(ctx, start, rate, n, due)
	close(due)
	wg.Wait()
	total := newResult()
	total.elapsed = time.Since(start)
	for _, shard := range shards {
		total.merge(shard.res)
	}
	return total
}

// openLoopShards is the number of results the open loop's senders share.
const openLoopShards = 16

// lockedResult is a result several senders record into.
type lockedResult struct {
	mu  sync.Mutex
	res *result
}

func (l *lockedResult) record(latency time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.res.fail(err)
		return
	}
	l.res.callLatency.record(latency)
	l.res.calls++
	l.res.messages++
}

// pace sends the intended time of each of n calls to due when it comes,
// sleeping in between; after a late wake-up it sends every call already
// due at once, keeping their intended times. It stops early when ctx is
// done.
func pace(ctx context.Context, start time.Time, rate float64, n int, due chan<- time.Time) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := 0; i < n; i++ {
		intended := dueAt(start, rate, i)
		if wait := time.Until(intended); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		case due <- intended:
		}
	}
}

// openLoopResults holds the open-loop results: per target, per offered
// rate, per round.
type openLoopResults struct {
	rates   []float64
	targets []string
	rounds  int
	results map[string][][]*result // [target][rate][round]
}

func newOpenLoopResults(rates []float64, targets []string, rounds int) *openLoopResults {
	o := &openLoopResults{rates: rates, targets: targets, rounds: rounds, results: make(map[string][][]*result)}
	for _, t := range targets {
		o.results[t] = make([][]*result, len(rates))
		for i := range rates {
			o.results[t][i] = make([]*result, rounds)
		}
	}
	return o
}

// openLoopPoint is the summary of one target at one offered rate:
// medians over the rounds, errors totalled.
type openLoopPoint struct {
	offered, achieved float64
	p50, p99, p999    time.Duration
	errors            int64
	samples           []string
	ok                bool
}

func (o *openLoopResults) point(target string, rateIndex int) openLoopPoint {
	p := openLoopPoint{offered: o.rates[rateIndex]}
	var achieved, p50, p99, p999 []float64
	for _, res := range o.results[target][rateIndex] {
		if res == nil {
			continue
		}
		p.ok = true
		achieved = append(achieved, res.callsPerSecond())
		p50 = append(p50, float64(res.callLatency.quantile(0.50)))
		p99 = append(p99, float64(res.callLatency.quantile(0.99)))
		p999 = append(p999, float64(res.callLatency.quantile(0.999)))
		p.errors += res.errors
		for _, s := range res.errorSamples {
			if len(p.samples) < maxErrorSamples {
				p.samples = append(p.samples, s)
			}
		}
	}
	p.achieved = median(achieved)
	p.p50 = durationOrZero(median(p50))
	p.p99 = durationOrZero(median(p99))
	p.p999 = durationOrZero(median(p999))
	return p
}
