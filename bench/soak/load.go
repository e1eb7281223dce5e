//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// loadOptions shape the steady load through the proxy.
type loadOptions struct {
	addr string
	// rate is the offered unary calls per second (open loop), made by
	// callers goroutines over conns connections; a tick with every caller
	// busy is counted as skipped, not queued.
	rate, callers, conns int
	payloadSize          int
	callTimeout          time.Duration
	// streams long server streams, each streamMessages responses
	// streamGap apart, restarted when they end.
	streams        int
	streamMessages int
	streamGap      time.Duration
}

// outcomes counts calls by status code; it keeps the first few messages of
// each failing code for the report.
type outcomes struct {
	kind   string // for the event log
	events *eventLog

	mu       sync.Mutex
	byCode   map[codes.Code]int64
	examples map[codes.Code][]string
}

func newOutcomes(kind string, events *eventLog) *outcomes {
	return &outcomes{kind: kind, events: events, byCode: make(map[codes.Code]int64), examples: make(map[codes.Code][]string)}
}

func (o *outcomes) record(err error) {
	code := status.Code(err)
	if err != nil {
		o.events.add(o.kind, code.String(), err.Error())
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.byCode[code]++
	if err != nil && len(o.examples[code]) < 3 {
		o.examples[code] = append(o.examples[code], err.Error())
	}
}

// snapshot returns a copy of the counts and examples.
func (o *outcomes) snapshot() (map[codes.Code]int64, map[codes.Code][]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	counts := make(map[codes.Code]int64, len(o.byCode))
	for k, v := range o.byCode {
		counts[k] = v
	}
	examples := make(map[codes.Code][]string, len(o.examples))
	for k, v := range o.examples {
		examples[k] = append([]string(nil), v...)
	}
	return counts, examples
}

// loadStats is what the load did; safe to read while it runs.
type loadStats struct {
	unary          *outcomes
	streams        *outcomes // one per stream that ended
	skipped        atomic.Int64
	streamMessages atomic.Int64
}

// runLoad offers the load until ctx ends and returns once every call has
// ended.
func runLoad(ctx context.Context, opts loadOptions, stats *loadStats) error {
	conns := make([]*grpc.ClientConn, opts.conns)
	for i := range conns {
		cc, err := grpc.NewClient(opts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return fmt.Errorf("soak: dialing the proxy: %w", err)
		}
		conns[i] = cc
	}
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()

	var wg sync.WaitGroup
	tokens := make(chan struct{}, opts.callers)
	req := &examplev1.EchoRequest{Payload: make([]byte, opts.payloadSize)}
	for i := range opts.callers {
		client := examplev1.NewEchoClient(conns[i%len(conns)])
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-tokens:
				}
				stats.unary.recordUnless(ctx, unaryCall(ctx, client, req, opts.callTimeout))
			}
		})
	}
	for i := range opts.streams {
		client := examplev1.NewEchoClient(conns[i%len(conns)])
		wg.Go(func() {
			for ctx.Err() == nil {
				err := streamCall(ctx, client, opts, stats)
				stats.streams.recordUnless(ctx, err)
				if err != nil {
					// A stream that fails at once (no backend) must not spin.
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		})
	}
	wg.Go(func() { pace(ctx, opts.rate, tokens, &stats.skipped) })
	wg.Wait()
	return nil
}

// recordUnless records err, unless ctx ended: calls cut short by the end of
// the run are not failures.
func (o *outcomes) recordUnless(ctx context.Context, err error) {
	if err != nil && ctx.Err() != nil {
		return
	}
	o.record(err)
}

// pace sends rate tokens per second, in 10 ms steps; a token no caller is
// free to take is counted in skipped.
func pace(ctx context.Context, rate int, tokens chan<- struct{}, skipped *atomic.Int64) {
	const step = 10 * time.Millisecond
	t := time.NewTicker(step)
	defer t.Stop()
	start := time.Now()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			due := int64(now.Sub(start).Seconds() * float64(rate))
			for ; sent < due; sent++ {
				select {
				case tokens <- struct{}{}:
				default:
					skipped.Add(1)
				}
			}
		}
	}
}

func unaryCall(ctx context.Context, client examplev1.EchoClient, req *examplev1.EchoRequest, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := client.Unary(ctx, req)
	if err != nil {
		return err
	}
	if len(resp.GetPayload()) != len(req.GetPayload()) {
		return status.Errorf(codes.DataLoss, "soak: %d payload bytes back, sent %d", len(resp.GetPayload()), len(req.GetPayload()))
	}
	return nil
}

// streamCall makes one long server stream and counts its responses.
func streamCall(ctx context.Context, client examplev1.EchoClient, opts loadOptions, stats *loadStats) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(opts.streamMessages)*opts.streamGap+10*time.Second)
	defer cancel()
	stream, err := client.ServerStream(ctx, &examplev1.EchoRequest{
		ResponseSize:  100,
		ResponseCount: int32(opts.streamMessages),
		Delay:         durationpb.New(opts.streamGap),
	})
	if err != nil {
		return err
	}
	var n int
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		n++
		stats.streamMessages.Add(1)
	}
	if n != opts.streamMessages {
		return status.Errorf(codes.DataLoss, "soak: stream ended after %d of %d responses", n, opts.streamMessages)
	}
	return nil
}
