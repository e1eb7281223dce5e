package frames

import (
	"sync"
	"time"
)

// Answers to a peer's PING wait up to pingAckDelay for other frames to
// the same peer, and go out with them.
//
// gRPC implementations ping after DATA to estimate the bandwidth-delay
// product (grpc-go sends one each time DATA arrives and none is
// unanswered): with a few calls per connection that is a PING for
// nearly every call, each read on its own by the proxy and, answered at
// once, each answer a system call of its own, on both the client and
// the backend side. Answered with the next frames to that peer instead
// (the next response, the next request, a window update), the answers
// cost no write of their own. A peer that gets nothing else within
// pingAckDelay gets its answer then. The delay only lengthens the
// round trips the peer measures by at most that much (a larger estimate
// means larger windows) and is far below any keepalive timeout.
const pingAckDelay = 5 * time.Millisecond

// ackFlusher writes out the PING answers that no other frames took
// along within pingAckDelay. Its goroutine runs while answers wait and
// ends once a round finds none.
type ackFlusher struct {
	mu      sync.Mutex
	pending []*writer
	running bool
}

// deferAckLocked leaves the PING answer just appended to w's buffer for
// the next write to the peer, or for the flusher; called with w.mu held.
func (e *Engine) deferAckLocked(w *writer) {
	if w.ackWaiting {
		return
	}
	w.ackWaiting = true
	a := &e.acks
	a.mu.Lock()
	a.pending = append(a.pending, w)
	start := !a.running
	a.running = true
	if start {
		// The caller is a connection's reader, counted in wg, so this
		// Add cannot race with the engine's final Wait.
		e.wg.Add(1)
		go e.flushAcks()
	}
	a.mu.Unlock()
}

// flushAcks writes out, every Config.pingAckDelay, the answers still
// waiting, until a round finds none or the engine closes.
func (e *Engine) flushAcks() {
	defer e.wg.Done()
	a := &e.acks
	t := time.NewTimer(e.cfg.pingAckDelay)
	defer t.Stop()
	var (
		b     batch
		spare []*writer
	)
	for {
		closing := false
		select {
		case <-t.C:
		case <-e.ctx.Done():
			closing = true
		}
		a.mu.Lock()
		ws := a.pending
		if len(ws) == 0 || closing {
			a.pending = nil
			a.running = false
		} else {
			a.pending = spare[:0]
		}
		a.mu.Unlock()
		for i, w := range ws {
			w.mu.Lock()
			if w.ackWaiting {
				w.ackWaiting = false
				w.kickLocked(&b)
			}
			w.mu.Unlock()
			ws[i] = nil
		}
		b.flush()
		if len(ws) == 0 || closing {
			return
		}
		spare = ws
		t.Reset(e.cfg.pingAckDelay)
	}
}
