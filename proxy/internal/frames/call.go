package frames

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// call is one proxied gRPC call: a client's stream and, once routed, a
// backend's stream.
type call struct {
	e      *Engine
	client *conn
	cid    uint32
	// Request is what routing sees; Header holds the backend's request
	// headers, ready to send.
	req      Request
	reqBlock []hpack.HeaderField
	start    time.Time
	// deadline is the client's (grpc-timeout), zero without one.
	deadline time.Time

	mu sync.Mutex
	// b is the batch of the reader handling an event of the call, nil
	// for other goroutines.
	b *batch
	// backend and bid: the stream on the backend, once opened.
	backend *conn
	bid     uint32
	target  *Backend
	route   Route
	// up carries requests to the backend, down responses to the client.
	up, down half
	// headersSent: response headers went to the client; trailers-only is
	// no longer possible, nor a retry.
	headersSent bool
	// clientEnded: the client half-closed its stream.
	clientEnded bool
	finished    bool
	status      Status
	hasStatus   bool
	trailer     []hpack.HeaderField
	// observed gets the call's result (Config.Observe).
	observed func(Result)

	// Retries. replay holds the request bytes sent to the backend until
	// the call commits: when response headers reach the client, or when
	// more than retryBuffer bytes were sent. attempts counts the attempts
	// routed.
	replay    chunkQueue
	committed bool
	attempts  int
}

// Retry limits: the request bytes kept for a retry, as gRPC keeps, and
// the attempts of one call, retries that never reached a backend
// included.
const (
	retryBuffer = 256 << 10
	maxAttempts = 5
)

// lock starts an event of the call, handled by the reader whose batch
// is b (nil for other goroutines).
func (c *call) lock(b *batch) {
	c.mu.Lock()
	c.b = b
}

// unlock ends an event of the call.
func (c *call) unlock() {
	c.b = nil
	c.mu.Unlock()
}

// onHeaders handles a HEADERS frame of an open stream from either side.
func (c *call) onHeaders(b *batch, from *conn, fields []hpack.HeaderField, endStream bool) {
	c.lock(b)
	defer c.unlock()
	if c.finished {
		return
	}
	if from == c.client {
		// Trailers from a client end its requests.
		if endStream {
			c.clientEnded = true
			c.up.deliverLocked(nil, true)
		}
		return
	}
	if from != c.backend {
		return
	}
	fields = responseFields(fields)
	if !endStream {
		if c.headersSent {
			return
		}
		c.headersSent = true
		c.commitLocked()
		w := c.client.w
		w.mu.Lock()
		w.headersLocked(c.cid, fields, false)
		w.kickLocked(c.b)
		w.mu.Unlock()
		return
	}
	st, ok := parseStatus(fields)
	if !c.headersSent && ok && st.Code == codes.Unavailable {
		// The backend turned the call down without an answer.
		if !c.up.ended {
			c.backend.rst(c.b, c.bid, http2.ErrCodeCancel)
			c.up.ended = true
		}
		c.backend.remove(c.bid)
		if c.retryLocked(false, st) {
			return
		}
	}
	if ok {
		c.status, c.hasStatus = st, true
	}
	c.trailer = fields
	if !c.up.ended {
		// The backend ended the call before the client's requests did.
		c.backend.rst(c.b, c.bid, http2.ErrCodeCancel)
		c.up.ended = true
		c.backend.remove(c.bid)
	}
	c.headersSent = true
	c.down.trailers = fields
	c.down.deliverLocked(nil, true)
	if !c.down.ended {
		// The trailers wait behind DATA; fields is the reader's, reused
		// for its next header block.
		c.down.trailers = slices.Clone(fields)
		c.trailer = c.down.trailers
	}
}

// onData handles DATA of the call from either side; padding is the
// frame's padding, flow-controlled but not forwarded.
func (c *call) onData(b *batch, from *conn, p []byte, endStream bool, padding uint32) {
	c.lock(b)
	defer c.unlock()
	if c.finished {
		return
	}
	h := &c.down
	if from == c.client {
		h = &c.up
		if endStream {
			c.clientEnded = true
		}
	} else if from != c.backend {
		return
	}
	if !h.receivedLocked(int64(len(p)) + int64(padding)) {
		// RFC 9113 6.9.1: a stream error for the sender.
		from.rst(c.b, h.srcID, http2.ErrCodeFlowControl)
		st := Status{Code: codes.Internal, Message: "quaestor: the backend sent more than its flow-control window"}
		if h == &c.up {
			c.e.logger.Warn("proxy: client sent more than its flow-control window: stream reset",
				"client", c.client.nc.RemoteAddr().String())
			c.abortLocked(Status{Code: codes.Canceled, Message: "quaestor: the client sent more than its flow-control window"})
			return
		}
		c.up.ended = true // reset above
		c.backend.remove(c.bid)
		c.failLocked(st)
		return
	}
	if n := h.scan.scan(p, uint32(c.e.cfg.MaxMessageSize)); n > 0 {
		limit := c.e.cfg.MaxMessageSize
		msg := fmt.Sprintf("quaestor: response message from the backend larger than proxy.max_message_size (%d bytes): larger than max (%d vs. %d)", limit, n, limit)
		if h == &c.up {
			msg = fmt.Sprintf("quaestor: request message larger than max (%d vs. %d), the proxy.max_message_size", n, limit)
		}
		c.failLocked(Status{Code: codes.ResourceExhausted, Message: msg})
		return
	}
	h.creditLocked(padding)
	if h == &c.up && !c.committed {
		if c.replay.len()+len(p) > retryBuffer {
			c.commitLocked()
		} else {
			c.replay.push(p)
		}
	}
	h.deliverLocked(p, endStream)
}

// commitLocked makes the call's current attempt its last.
func (c *call) commitLocked() {
	c.committed = true
	c.replay.reset()
}

func (c *call) onWindowUpdate(b *batch, from *conn, incr int64) {
	c.lock(b)
	defer c.unlock()
	h := &c.up
	if from == c.client {
		h = &c.down
	} else if from != c.backend {
		return
	}
	h.sendWin += incr
	h.pushLocked()
}

// onReset handles RST_STREAM from either side.
func (c *call) onReset(b *batch, from *conn, code http2.ErrCode) {
	c.lock(b)
	defer c.unlock()
	if c.finished {
		return
	}
	if from == c.client {
		c.abortLocked(Status{Code: codes.Canceled, Message: "quaestor: the client cancelled the call"})
		return
	}
	if from != c.backend {
		return
	}
	c.up.ended = true // the backend's stream is closed
	c.backend.remove(c.bid)
	st := resetStatus(code)
	if code == http2.ErrCodeCancel && !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		// gRPC servers reset the calls whose deadline passed: the
		// client's deadline, which the backend got in grpc-timeout.
		st = Status{Code: codes.DeadlineExceeded, Message: "context deadline exceeded"}
	}
	if code == http2.ErrCodeRefusedStream && c.retryLocked(true, st) {
		return
	}
	c.failLocked(st)
}

// onLost handles the end of either side's connection; unprocessed says
// the backend declared (GOAWAY) that it never saw the call.
func (c *call) onLost(b *batch, from *conn, err error, unprocessed bool) {
	c.lock(b)
	defer c.unlock()
	if c.finished {
		return
	}
	if from == c.client {
		c.down.ended = true
		c.abortLocked(Status{Code: codes.Canceled, Message: "quaestor: the client's connection closed: " + err.Error()})
		return
	}
	if from != c.backend {
		return
	}
	c.up.ended = true
	c.backend.remove(c.bid)
	st := Status{Code: codes.Unavailable, Message: fmt.Sprintf("quaestor: connection to backend %s lost: %v", c.target.addr, err)}
	if !c.headersSent && c.retryLocked(unprocessed, st) {
		return
	}
	c.failLocked(st)
}

// onBackendFailed handles a backend connection that could not be made
// for a call waiting on it.
func (c *call) onBackendFailed(b *Backend, err error) {
	c.mu.Lock()
	defer c.unlock()
	if c.finished || c.target != b || c.backend != nil {
		return
	}
	st := Status{Code: codes.Unavailable, Message: fmt.Sprintf("quaestor: connecting to backend %s: %v", b.addr, err)}
	if c.retryLocked(true, st) {
		return
	}
	c.failLocked(st)
}

// retryLocked sends the call again, to another backend, after its
// attempt failed with st before the backend answered; it reports whether
// it did. transparent says the backend never saw the request: any call
// may then be retried; otherwise Config.RetryDelay decides. The attempt's
// stream on the backend is closed already.
func (c *call) retryLocked(transparent bool, st Status) bool {
	if c.finished || c.headersSent || c.down.ended || c.attempts+1 >= maxAttempts {
		return false
	}
	// The request must be whole: still waiting (never sent), or kept.
	neverSent := c.bid == 0
	if !neverSent && c.committed {
		return false
	}
	if !transparent && c.e.cfg.RetryDelay == nil {
		return false
	}
	// The attempt is over either way; its result feeds the retry budget
	// that RetryDelay reads.
	c.endAttemptLocked(st)
	var delay time.Duration
	if !transparent {
		ok := false
		if delay, ok = c.e.cfg.RetryDelay(&c.req, c.attempts); !ok {
			return false
		}
	}
	if !neverSent {
		// Send again what the backend was sent; the client has had its
		// flow-control credit for it already.
		// (replay holds all the client sent, what waited included.)
		c.up.noCredit = int64(c.replay.len() - c.up.q.len())
		c.up.q.reset()
		c.replay.copyTo(&c.up.q)
	}
	c.up.ended, c.up.queued, c.up.dstID, c.up.sendWin = false, false, 0, 0
	c.down.src, c.down.srcID = nil, 0
	c.backend, c.bid = nil, 0
	if delay <= 0 {
		c.routeLocked()
		return true
	}
	c.e.wg.Add(1)
	time.AfterFunc(delay, func() {
		defer c.e.wg.Done()
		c.mu.Lock()
		defer c.unlock()
		if !c.finished {
			c.routeLocked()
		}
	})
	return true
}

// endAttemptLocked ends the current attempt with st, and counts it.
func (c *call) endAttemptLocked(st Status) {
	if c.target != nil {
		c.req.Tried = append(c.req.Tried, c.target)
	}
	c.req.Attempt++
	c.attempts++
	if done := c.route.Done; done != nil {
		c.route.Done = nil
		done(Result{Status: st, Duration: time.Since(c.start), Backend: c.target})
	}
}

// failLocked ends the call with a status of the proxy's own.
func (c *call) failLocked(st Status) {
	if c.finished || c.down.ended {
		return
	}
	c.status, c.hasStatus = st, true
	if c.backend != nil && !c.up.ended {
		c.backend.rst(c.b, c.bid, http2.ErrCodeCancel)
		c.up.ended = true
		c.backend.remove(c.bid)
	}
	c.down.q.reset()
	c.down.trailers = statusFields(st, !c.headersSent)
	c.headersSent = true
	c.down.endPending = true
	c.down.pushLocked()
}

// abortLocked ends the call when the client can no longer be answered.
func (c *call) abortLocked(st Status) {
	if !c.hasStatus {
		c.status, c.hasStatus = st, true
	}
	c.down.ended = true
	if c.backend != nil && !c.up.ended {
		c.backend.rst(c.b, c.bid, http2.ErrCodeCancel)
		c.up.ended = true
		c.backend.remove(c.bid)
	}
	c.finishLocked()
}

// endedLocked is called when a half has sent END_STREAM.
func (c *call) endedLocked(h *half) {
	if h == &c.down {
		if !c.clientEnded {
			// The client may still be sending: tell it to stop.
			c.client.rst(c.b, c.cid, http2.ErrCodeNo)
		}
		c.finishLocked()
	}
}

func (c *call) finishLocked() {
	if c.finished {
		return
	}
	c.finished = true
	c.client.remove(c.cid)
	if c.backend != nil && !c.up.ended {
		c.backend.rst(c.b, c.bid, http2.ErrCodeCancel)
		c.up.ended = true
	}
	if c.backend != nil {
		c.backend.remove(c.bid)
	}
	c.up.q.reset()
	c.down.q.reset()
	c.replay.reset()
	if !c.hasStatus {
		c.status = Status{Code: codes.Internal, Message: "quaestor: the backend ended the call without a status"}
	}
	res := Result{Status: c.status, Duration: time.Since(c.start),
		MessagesIn: c.up.scan.messages, BytesIn: c.up.scan.bytes,
		MessagesOut: c.down.scan.messages, BytesOut: c.down.scan.bytes,
		Trailer: c.trailer, Backend: c.target}
	if done := c.route.Done; done != nil {
		c.route.Done = nil
		done(res)
	}
	if c.observed != nil {
		c.observed(res)
	}
	if !c.client.local {
		c.e.inFlight.Add(-1)
	}
}

// openLocked opens the call's stream on bc; false when bc takes no new
// streams.
func (c *call) openLocked(bc *conn) bool {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.closed || bc.goingAway || bc.nextID > maxStreamID || uint32(len(bc.streams)) >= bc.peerMaxStreams {
		return false
	}
	id := bc.nextID
	bc.nextID += 2
	bc.streams[id] = c
	c.backend, c.bid = bc, id
	c.up.dst, c.up.dstID, c.up.sendWin = bc, id, bc.peerInitialWin
	c.down.src, c.down.srcID = bc, id
	w := bc.w
	w.mu.Lock()
	w.headersLocked(id, c.reqBlock, false)
	w.kickLocked(c.b)
	w.mu.Unlock()
	c.up.pushLocked()
	return true
}

// hopByHop lists the connection-specific headers that are never
// forwarded.
func hopByHop(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// responseFields drops connection-specific fields from a backend's
// headers or trailers.
func responseFields(fields []hpack.HeaderField) []hpack.HeaderField {
	for _, f := range fields {
		if hopByHop(f.Name) {
			out := make([]hpack.HeaderField, 0, len(fields))
			for _, f := range fields {
				if !hopByHop(f.Name) {
					out = append(out, f)
				}
			}
			return out
		}
	}
	return fields
}
