package frames

import (
	"sync"
	"time"
)

// Answers to a peer's PING wait for other frames to the same peer, and
// go out with them.
//
// gRPC implementations ping after DATA to estimate the bandwidth-delay
// product (grpc-go sends one each time DATA arrives and none is
// unanswered): with a few calls per connection that is a PING for
// nearly every call, each read on its own by the proxy and, answered at
// once, each answer a system call of its own, on both the client and
// the backend side. Answered with the next frames to that peer instead
// (the next response, the next request, a window update), the answers
// cost no write of their own. They go after those frames: a gRPC peer
// that reads the answer after the DATA it came with counts that DATA in
// the sample of the PING answered, and does not ping for it again, so
// that a peer with a call at a time pings for every other call instead
// of every one.
//
// How long an answer may wait depends on what the PING follows:
//
//   - A PING that came after the proxy's DATA or HEADERS to that peer
//     (writer.sentData) is the peer's bandwidth estimate, sent when the
//     data arrived. Its answer waits up to pingAckPatience. On a
//     connection that carries one call at a time, a backend's among a
//     thousand that share the calls, the next frames to the peer are the
//     next call's, a call interval later: about 100 ms per connection
//     at 10,000 calls/s over 1,000 backends. Answered within 5 ms, each
//     answer was a write, a segment and a wake-up of the backend of its
//     own, for nearly every call. The longer wait lengthens only the
//     round trip the peer's estimate measures when the proxy had
//     nothing else for it, which can only make its estimate, and the
//     window it grants, larger; while data flows the answers go with
//     it at once.
//   - Any other PING (a keepalive probe, sent after a silence, or a
//     PING whose sender measures the round trip) waits pingAckDelay.
//
// Both are far below any keepalive timeout.
const (
	pingAckDelay    = 5 * time.Millisecond
	pingAckPatience = 200 * time.Millisecond
)

// ackClass is how long an answer may wait: ackPrompt for
// Config.pingAckDelay, ackPatient for Config.pingAckPatience.
type ackClass int

const (
	ackPrompt ackClass = iota
	ackPatient
	ackClasses
)

// ackFlusher writes out the PING answers that no other frames took
// along in time. Its goroutine runs while answers wait and ends once
// none does.
type ackFlusher struct {
	mu sync.Mutex
	// queues holds, per class, the answers that wait, in the order they
	// began to wait: the order they are due. An entry whose answer went
	// out with other frames stays until it is due, and is then dropped.
	queues  [ackClasses][]waitingAck
	running bool
	// wake tells the flusher, asleep until a patient answer is due, that
	// a prompt one began to wait.
	wake chan struct{}
}

// waitingAck is an answer w holds, the gen-th of w's to wait
// (writer.ackGen), due to be written at due.
type waitingAck struct {
	w   *writer
	gen uint64
	due time.Time
}

// ackSlack is how much later than due an answer may go, so that answers
// due within it go in one round of the flusher: a quarter of the wait.
func ackSlack(wait time.Duration) time.Duration { return wait / 4 }

// deferAckLocked leaves the PING answer w holds (writer.holdAckLocked)
// for the next write to the peer, or for the flusher once class's wait is
// over; called with w.mu held.
func (e *Engine) deferAckLocked(w *writer, class ackClass) {
	a := &e.acks
	a.mu.Lock()
	wasEmpty := len(a.queues[class]) == 0
	a.queues[class] = append(a.queues[class], waitingAck{w: w, gen: w.ackGen, due: time.Now().Add(e.ackWait(class))})
	start := !a.running
	a.running = true
	if start {
		// The caller is a connection's reader, counted in wg, so this
		// Add cannot race with the engine's final Wait.
		e.wg.Add(1)
		go e.flushAcks()
	} else if wasEmpty && class == ackPrompt {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
	a.mu.Unlock()
}

// ackWait is how long an answer of class waits for company.
func (e *Engine) ackWait(class ackClass) time.Duration {
	if class == ackPatient {
		return e.cfg.pingAckPatience
	}
	return e.cfg.pingAckDelay
}

// flushAcks writes out the answers whose wait is over, until none waits
// or the engine closes.
func (e *Engine) flushAcks() {
	defer e.wg.Done()
	a := &e.acks
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var (
		b   batch
		due []waitingAck
	)
	for {
		a.mu.Lock()
		next, ok := a.nextRoundLocked(e)
		if !ok {
			a.running = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		t.Reset(time.Until(next))
		closing := false
		select {
		case <-t.C:
		case <-a.wake:
			continue // a prompt answer may be due sooner
		case <-e.ctx.Done():
			closing = true
		}
		now := time.Now()
		a.mu.Lock()
		for c, q := range a.queues {
			n := 0
			for n < len(q) && (closing || !q[n].due.After(now)) {
				n++
			}
			due = append(due, q[:n]...)
			rest := copy(q, q[n:])
			clear(q[rest:])
			a.queues[c] = q[:rest]
		}
		if closing {
			a.running = false
		}
		a.mu.Unlock()
		for i, p := range due {
			w := p.w
			w.mu.Lock()
			if w.ackWaiting && w.ackGen == p.gen {
				w.releaseAckLocked()
				w.kickLocked(&b)
			}
			w.mu.Unlock()
			due[i] = waitingAck{}
		}
		due = due[:0]
		b.flush()
		if closing {
			return
		}
	}
}

// nextRoundLocked returns when the flusher next looks: when the first
// waiting answer is due, plus the slack that lets the answers due soon
// after it go in the same round; false when none waits.
func (a *ackFlusher) nextRoundLocked(e *Engine) (time.Time, bool) {
	var next time.Time
	for c, q := range a.queues {
		if len(q) == 0 {
			continue
		}
		at := q[0].due.Add(ackSlack(e.ackWait(ackClass(c))))
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, !next.IsZero()
}
