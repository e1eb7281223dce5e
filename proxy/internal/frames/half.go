package frames

import (
	"encoding/binary"

	"golang.org/x/net/http2/hpack"
)

// half is one direction of a call: DATA read from src's stream srcID goes
// to dst's stream dstID. Its fields are guarded by the call's mu.
//
// Flow control: the proxy gives the source its stream window back only
// as it hands the bytes to the destination's writer, so what waits in a
// half (pending) is bounded by the stream window the proxy advertised.
// Connection windows are given back as soon as DATA is read, so that one
// slow stream cannot hold up the others of its connection.
type half struct {
	c        *call
	src, dst *conn
	srcID    uint32
	// dstID is 0 until the stream is open on dst.
	dstID uint32
	// sendWin is dst's window for this stream.
	sendWin int64
	// q is the DATA waiting for a window or buffer room.
	q chunkQueue
	// endPending: the source ended the stream; END_STREAM goes after the
	// pending DATA. ended: END_STREAM went out.
	endPending, ended bool
	// trailers, when set, end the stream instead of an empty DATA frame.
	trailers []hpack.HeaderField
	// owed is stream window to give back to the source; noCredit is
	// what is sent again on a retry, whose credit the source had. window
	// is the source's window on this stream (streamWindow until it grows).
	owed     uint32
	noCredit int64
	window   int64
	// recvAvail is what the source may still send on the stream: the
	// window the proxy advertised, less what came, plus what went back.
	recvAvail int64
	// queued: the half is in dst.blocked, waiting for dst's connection
	// window or writer room.
	queued bool
	scan   messageScanner
}

// deliverLocked takes DATA read from the source; p is only valid for
// the call, or, when the call's batch is lending, until it is flushed.
func (h *half) deliverLocked(p []byte, endStream bool) {
	if endStream {
		h.endPending = true
	}
	if h.q.len() == 0 && h.dstID != 0 && !h.ended {
		// Nothing waits: send from p directly, keep what does not fit.
		n, _ := h.sendLocked(p, h.endPending, h.c.b)
		if h.ended {
			return
		}
		p = p[n:]
	}
	h.q.push(p)
	h.pushLocked()
}

// pushLocked sends what waits, as far as the windows and dst's writer
// room allow.
func (h *half) pushLocked() {
	for h.dstID != 0 && !h.ended && (h.q.len() > 0 || h.endPending) {
		p := h.q.peek()
		n, progressed := h.sendLocked(p, h.endPending && len(p) == h.q.len(), nil)
		if h.ended {
			// All went, and the call may have finished (releasing q's
			// chunks already).
			h.q.reset()
			return
		}
		h.q.consume(n)
		if !progressed {
			return
		}
	}
}

// sendLocked writes what the windows and dst's writer room allow of p,
// ending the stream (with END_STREAM, or the trailers) when end is set
// and all of p goes. It returns how much of p went, and false when
// nothing could (the half then waits for a window update or room).
// lender, when set, is the batch p may be lent under (dataLocked).
func (h *half) sendLocked(p []byte, end bool, lender *batch) (int, bool) {
	w := h.dst.w
	w.mu.Lock()
	if w.closed || w.err != nil {
		w.mu.Unlock()
		return 0, false
	}
	n := len(p)
	if n > 0 {
		n = int(min(int64(n), h.sendWin, h.dst.sendWin, int64(w.roomLocked())))
		if n <= 0 {
			if h.sendWin > 0 && !h.queued {
				h.queued = true
				h.dst.blocked = append(h.dst.blocked, h)
			}
			w.mu.Unlock()
			return 0, false
		}
	}
	end = end && n == len(p)
	if end && h.trailers != nil {
		if n > 0 {
			w.dataLocked(h.dstID, p[:n], false, lender)
		}
		w.headersLocked(h.dstID, h.trailers, true)
	} else {
		w.dataLocked(h.dstID, p[:n], end, lender)
	}
	h.sendWin -= int64(n)
	h.dst.sendWin -= int64(n)
	w.kickLocked(h.c.b)
	w.mu.Unlock()
	h.creditLocked(uint32(n))
	if end {
		h.ended = true
		h.c.endedLocked(h)
	}
	return n, true
}

// receivedLocked counts n bytes of DATA (padding included) read from the
// source against the stream window the proxy advertised; false when the
// source sent more than that window.
func (h *half) receivedLocked(n int64) bool {
	if h.window == 0 {
		h.window, h.recvAvail = streamWindow, streamWindow
	}
	h.recvAvail -= n
	return h.recvAvail >= 0
}

// creditLocked gives the source back n bytes of stream window, in
// batches.
func (h *half) creditLocked(n uint32) {
	if h.noCredit > 0 {
		k := min(h.noCredit, int64(n))
		h.noCredit -= k
		n -= uint32(k)
	}
	if h.endPending || n == 0 {
		return // the source sends no more on this stream
	}
	if h.window == 0 {
		h.window, h.recvAvail = streamWindow, streamWindow
	}
	h.owed += n
	if h.owed < uint32(h.window/4) {
		return
	}
	if h.q.len() == 0 && h.window < maxStreamWindow {
		// The destination takes all the source sends: the window, not
		// the destination, limits the stream. Double it, as TCP's and
		// gRPC's window tuning do.
		h.owed += uint32(h.window)
		h.window *= 2
	}
	h.recvAvail += int64(h.owed)
	w := h.src.w
	w.mu.Lock()
	w.windowUpdateLocked(h.srcID, h.owed)
	w.kickLocked(h.c.b)
	w.mu.Unlock()
	h.owed = 0
}

// messageScanner follows the gRPC length-prefixed messages of a stream
// across DATA frames, to refuse messages over the size limit before they
// are forwarded.
type messageScanner struct {
	prefix    [5]byte
	prefixLen int
	remaining uint32
	// messages and bytes count what went through.
	messages, bytes int64
}

// scan reads p and returns the length of the first message larger than
// limit that starts in it, or 0.
func (s *messageScanner) scan(p []byte, limit uint32) uint32 {
	s.bytes += int64(len(p))
	for len(p) > 0 {
		if s.remaining > 0 {
			k := uint32(min(uint64(s.remaining), uint64(len(p))))
			s.remaining -= k
			p = p[k:]
			continue
		}
		k := copy(s.prefix[s.prefixLen:], p)
		s.prefixLen += k
		p = p[k:]
		if s.prefixLen < len(s.prefix) {
			return 0
		}
		s.prefixLen = 0
		length := binary.BigEndian.Uint32(s.prefix[1:])
		if length > limit {
			return length
		}
		s.messages++
		s.remaining = length
	}
	return 0
}
