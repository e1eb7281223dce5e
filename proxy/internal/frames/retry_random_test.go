package frames

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/quaestor-go/quaestor/internal/testwait"
)

// flakyBackend is a raw backend that fails each call in one of the ways
// the engine retries: it refuses the stream at once (REFUSED_STREAM), or
// reads part of the request and turns the call down with a trailers-only
// UNAVAILABLE, or goes away (GOAWAY) without processing it.
type flakyBackend struct {
	mu sync.Mutex
	r  *rand.Rand
	// readUpTo: per stream being read, the bytes after which the call is
	// turned down; read, the bytes read so far.
	readUpTo, read map[uint32]int
	// modes counts the calls failed each way.
	modes [3]int
}

func (b *flakyBackend) handle(p *rawPeer, f http2.Frame) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		id := f.StreamID
		mode := b.r.IntN(3)
		b.modes[mode]++
		switch mode {
		case 0:
			_ = p.write(func(w *http2.Framer) error { return w.WriteRSTStream(id, http2.ErrCodeRefusedStream) })
		case 1:
			b.readUpTo[id], b.read[id] = b.r.IntN(64<<10), 0
		case 2:
			last := max(id, 2) - 2 // the stream before this one, or none
			_ = p.write(func(w *http2.Framer) error { return w.WriteGoAway(last, http2.ErrCodeNo, nil) })
		}
	case *http2.DataFrame:
		id, n := f.StreamID, f.Header().Length
		if n > 0 {
			// Keep the engine sending, to the point of turning down.
			_ = p.write(func(w *http2.Framer) error {
				if err := w.WriteWindowUpdate(0, n); err != nil {
					return err
				}
				return w.WriteWindowUpdate(id, n)
			})
		}
		upTo, reading := b.readUpTo[id]
		if !reading {
			return
		}
		b.read[id] += len(f.Data())
		if b.read[id] >= upTo || f.StreamEnded() {
			delete(b.readUpTo, id)
			delete(b.read, id)
			_ = p.headers(id, true, hpackField(":status", "200"), hpackField("content-type", "application/grpc"),
				hpackField("grpc-status", "14"), hpackField("grpc-message", "turned down"))
		}
	}
}

// TestRetryRandom sends client streams of random messages (up to 200 KiB,
// all kept for a retry) through flaky backends that refuse, turn down or
// go away at random, until an attempt reaches the backend that answers
// with the request's length and CRC-32. Every call succeeds, the last
// backend gets each request exactly once and whole, and the client's
// flow control survives the retries (the engine gives no window twice).
func TestRetryRandom(t *testing.T) {
	ctx := testContext(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	good := &windowBackend{r: rand.New(rand.NewPCG(seed, 1)), initial: 65535,
		streams: map[uint32]*requestSum{}, connWindow: initialWindow}
	t.Cleanup(good.late.Wait)
	goodSrv := startRawServer(t, good.handle)
	var flakySrv []*rawServer
	var flakies []*flakyBackend
	for i := range 3 {
		flaky := &flakyBackend{r: rand.New(rand.NewPCG(seed, uint64(10+i))), readUpTo: map[uint32]int{}, read: map[uint32]int{}}
		flakies = append(flakies, flaky)
		flakySrv = append(flakySrv, startRawServer(t, flaky.handle))
	}
	var late lateRouter
	e := startEngine(t, Config{
		Router:     &late,
		RetryDelay: func(*Request, int) (time.Duration, bool) { return time.Millisecond, true },
	}, "")
	goodB := dialBackend(e.Engine, goodSrv.addr)
	var flakyB []*Backend
	for _, s := range flakySrv {
		flakyB = append(flakyB, dialBackend(e.Engine, s.addr))
	}
	var routeMu sync.Mutex
	routeR := rand.New(rand.NewPCG(seed, 2))
	late.set(routerFunc(func(r *Request) (Route, error) {
		// Up to three attempts on flaky backends not tried yet (their
		// connections may be going away), then the good one.
		routeMu.Lock()
		defer routeMu.Unlock()
		if r.Attempt < 3 && routeR.IntN(4) > 0 {
			for _, i := range routeR.Perm(len(flakyB)) {
				if !slices.Contains(r.Tried, flakyB[i]) {
					return Route{Backend: flakyB[i]}, nil
				}
			}
		}
		return Route{Backend: goodB}, nil
	}))
	cc := dial(t, e.addr)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(100+g)))
			for range 10 {
				if err := randomRequest(ctx, cc, r, 200<<10); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	testwait.For(ctx, t, "the engine to end every call", func() bool { return e.InFlight() == 0 })
	good.mu.Lock()
	defer good.mu.Unlock()
	if good.overrun != "" {
		t.Errorf("the engine sent beyond the backend's windows: %s", good.overrun)
	}
	var modes [3]int
	for _, f := range flakies {
		f.mu.Lock()
		for i, n := range f.modes {
			modes[i] += n
		}
		f.mu.Unlock()
	}
	t.Logf("attempts refused %d, turned down %d, sent away %d", modes[0], modes[1], modes[2])
	if modes[0] == 0 || modes[1] == 0 || modes[2] == 0 {
		t.Errorf("attempts refused %d, turned down %d, sent away %d: want some of each", modes[0], modes[1], modes[2])
	}
}
