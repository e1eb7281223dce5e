// Package echoload runs a steady load of Echo unary calls for the fault
// tests: paced calls from a few goroutines over one connection, counting
// which server answered each and when calls failed, so that a test can
// say how many calls a fault cost and wait for routing to settle.
//
//	load := echoload.Start(ctx, cc, echoload.Options{Workers: 4})
//	defer load.Stop()
//	// ... inject a fault, wait on load.ReachedAfresh("b"), ...
//	load.Stop()
//	t.Log(load.Summary())
package echoload

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	examplev1 "github.com/quaestor-go/quaestor/proto/example/v1"
)

// Options configure a Load.
type Options struct {
	// Workers is how many goroutines make calls. Default 1.
	Workers int
	// Pace spaces one worker's calls: a steady load, not a benchmark, on
	// a machine shared with other tests. Default 2ms.
	Pace time.Duration
	// CallTimeout bounds each call. Default 5s.
	CallTimeout time.Duration
}

// Load is a running load; Stop ends it.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ok     atomic.Int64
	failed atomic.Int64

	mu     sync.Mutex
	served map[string]int64 // calls answered, by server name
	errs   []error          // the first failures
	// windows are the spans of time in which calls failed, each at most
	// a second from the next failure.
	windows []FailureWindow
}

// FailureWindow is a span of time in which calls failed.
type FailureWindow struct {
	First, Last time.Time
	Failed      int
}

// keptErrors is how many failures a Load keeps for its summary.
const keptErrors = 5

// Start starts the load on cc; it runs until Stop or until ctx ends.
func Start(ctx context.Context, cc grpc.ClientConnInterface, opts Options) *Load {
	opts.Workers = max(opts.Workers, 1)
	if opts.Pace <= 0 {
		opts.Pace = 2 * time.Millisecond
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 5 * time.Second
	}
	echo := examplev1.NewEchoClient(cc)
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{cancel: cancel, served: map[string]int64{}}
	for range opts.Workers {
		l.wg.Go(func() {
			tick := time.NewTicker(opts.Pace)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				callCtx, cancelCall := context.WithTimeout(ctx, opts.CallTimeout)
				resp, err := echo.Unary(callCtx, &examplev1.EchoRequest{})
				cancelCall()
				if ctx.Err() != nil {
					return // stopping: not a failure of what is under test
				}
				l.record(resp.GetServer(), err)
			}
		})
	}
	return l
}

func (l *Load) record(server string, err error) {
	if err == nil {
		l.ok.Add(1)
		l.mu.Lock()
		l.served[server]++
		l.mu.Unlock()
		return
	}
	now := time.Now()
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < keptErrors {
		l.errs = append(l.errs, fmt.Errorf("%s: %w", now.Format("15:04:05.000"), err))
	}
	if n := len(l.windows); n > 0 && now.Sub(l.windows[n-1].Last) < time.Second {
		l.windows[n-1].Last = now
		l.windows[n-1].Failed++
	} else {
		l.windows = append(l.windows, FailureWindow{First: now, Last: now, Failed: 1})
	}
}

// Stop ends the load and waits for its workers. It may be called more
// than once.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}

// OK and Failed count the calls that succeeded and failed so far.
func (l *Load) OK() int64     { return l.ok.Load() }
func (l *Load) Failed() int64 { return l.failed.Load() }

// ServedBy returns how many calls the named server answered.
func (l *Load) ServedBy(server string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.served[server]
}

// Errors returns the first failures, each with its time.
func (l *Load) Errors() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// ReachedAfresh returns a condition that holds once every named server
// has answered a call made after ReachedAfresh was called.
func (l *Load) ReachedAfresh(servers ...string) func() bool {
	base := make(map[string]int64, len(servers))
	for _, s := range servers {
		base[s] = l.ServedBy(s)
	}
	return func() bool {
		for s, n := range base {
			if l.ServedBy(s) == n {
				return false
			}
		}
		return true
	}
}

// AwayFrom returns a condition that holds once run calls in a row were
// answered by servers other than server.
func (l *Load) AwayFrom(server string, run int64) func() bool {
	gone, others := l.ServedBy(server), l.OK()
	return func() bool {
		if now := l.ServedBy(server); now != gone {
			gone, others = now, l.OK()
			return false
		}
		return l.OK()-others >= run
	}
}

// Summary says how many calls succeeded and failed, who answered, and
// when calls failed.
func (l *Load) Summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "load: %d calls ok, %d failed; served %v", l.ok.Load(), l.failed.Load(), maps.Clone(l.served))
	for _, w := range l.windows {
		fmt.Fprintf(&b, "\nload: %d calls failed from %s for %s", w.Failed, w.First.Format("15:04:05.000"), w.Last.Sub(w.First).Round(time.Millisecond))
	}
	if len(l.errs) > 0 {
		fmt.Fprintf(&b, "\nload: first failures: %v", l.errs)
	}
	return b.String()
}
