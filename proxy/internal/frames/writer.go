package frames

import (
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// writer is a connection's outbound side: frames are appended to a buffer
// under mu by whichever goroutine produces them. A reader that produced
// them writes the buffer out itself, without blocking, when it has
// handled what one read brought in (see batch); what the socket does not
// take then, and frames from other goroutines, the connection's write
// loop writes out. Frames produced while a write is under way go out
// together in the next one, so a busy connection makes one system call
// for many frames, and no producer ever blocks on the socket.
type writer struct {
	conn net.Conn

	mu  sync.Mutex
	buf []byte
	// spare is the buffer the last write used, reused for the next.
	spare []byte
	// err is the error that ended the connection's writes, if one did.
	err    error
	closed bool
	// drained is called, outside mu, when the buffer falls below
	// lowWater after having been above highWater: senders of DATA that
	// waited for room go on.
	aboveHigh bool
	drained   func()

	// enc encodes header blocks into hbuf for this connection's peer.
	enc  *hpack.Encoder
	hbuf []byte
	// fieldCache and tableGen: see encodeFieldLocked. sizeUpdate is set
	// when the peer's SETTINGS may have left a table size update due,
	// which the encoder writes before the next field it encodes.
	fieldCache [16][2]cachedField
	tableGen   uint64
	sizeUpdate bool

	// peerMaxFrame is the largest frame payload the peer accepts.
	peerMaxFrame uint32

	kick chan struct{}
	// inBatch is the batch that will wake the loop, if one will.
	inBatch *batch
	// sentData: DATA or HEADERS went out since the peer's last ping, so
	// that a ping answers them (a flow-control estimate).
	sentData bool
	// writing: a write is under way, with mu released.
	writing bool
	// ackWaiting: the answer to the PING with ackData, the ackGen-th to
	// wait, is held for the next write to the peer, which puts it after
	// the frames it goes with (holdAckLocked).
	ackWaiting bool
	ackData    [8]byte
	ackGen     uint64
	// raw, when the connection has one, writes without blocking.
	raw *rawWriter

	// lent is DATA the buffer refers to instead of holding it, each at
	// its place in buf, lentLen bytes in all: bytes of the read buffer
	// of a connection whose reader handles them under the batch lender,
	// valid until that batch is flushed (see dataLocked). vec is the
	// scratch of the vectored write that sends them.
	lent    []loan
	lentLen int
	lender  *batch
	vec     [][]byte
	// stopped is closed when loop returns.
	stopped chan struct{}

	// release gives back grown buffers once nothing was written for
	// idleRelease (releaseTick): writes counts the writes, writesAtTick
	// what it was at the timer's last look.
	release      *time.Timer
	releaseArmed bool
	writes       uint64
	writesAtTick uint64
}

// Buffer limits of a connection's outbound side: above highWater no more
// DATA is taken in (it waits, counted against the windows of the streams
// it came from, until the buffer falls below lowWater). Control frames
// are always taken.
const (
	highWater = 1 << 20
	lowWater  = 256 << 10
	// maxSpare bounds the buffer kept between writes: a busy stream's
	// buffer goes up to highWater and a little more, and is reused while
	// the connection has streams; smallSpare is what it keeps when it has
	// none (releaseLarge).
	maxSpare   = highWater + 64<<10
	smallSpare = 64 << 10

	// A DATA payload of at least minLoan bytes read straight from a
	// socket is written from the reader's buffer, not copied into the
	// writer's: at most maxLoans of them per write, as a vectored write
	// takes at most 1,024 pieces, and the pieces cost more than copies
	// of small payloads.
	minLoan  = 4 << 10
	maxLoans = 256
)

// loan is a piece of DATA lent to a writer: it goes out before the byte
// at of the writer's buffer.
type loan struct {
	at int
	p  []byte
}

func newWriter(conn net.Conn) *writer {
	w := &writer{conn: conn, kick: make(chan struct{}, 1), stopped: make(chan struct{}), peerMaxFrame: 16384}
	w.enc = hpack.NewEncoder((*hpackSink)(w))
	if sc, ok := conn.(syscall.Conn); ok && canTryWrite {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = newRawWriter(raw)
		}
	}
	return w
}

// hpackSink lets the encoder append to hbuf.
type hpackSink writer

func (s *hpackSink) Write(p []byte) (int, error) {
	s.hbuf = append(s.hbuf, p...)
	return len(p), nil
}

// loop writes until the connection fails or close is called and the
// buffer is empty. It returns the write error, if any.
func (w *writer) loop() error {
	defer close(w.stopped)
	for range w.kick {
		w.mu.Lock()
		for w.pendingLocked() > 0 && w.err == nil && !w.writing {
			w.writeLocked(false, nil)
		}
		done := (w.closed && !w.writing) || w.err != nil
		err := w.err
		w.mu.Unlock()
		if done {
			return err
		}
	}
	return nil
}

// pendingLocked is the number of bytes waiting to be written.
func (w *writer) pendingLocked() int { return len(w.buf) + w.lentLen }

// writeLocked writes the buffer out, with mu released meanwhile. Unless
// tryOnly, it blocks until all is written; tryOnly writes what the socket
// takes without blocking (the write loop does the rest). Lent bytes go
// out with a vectored write when by, the batch that lent them, writes;
// anyone else copies them into the buffer first, as their lender may
// read over them while the write is under way.
func (w *writer) writeLocked(tryOnly bool, by *batch) {
	if len(w.lent) > 0 && (!tryOnly || by != w.lender) {
		w.settleLoansLocked()
	}
	w.releaseAckLocked() // after everything else, lent DATA included
	b := w.buf
	// buf and spare must never share an array: b is written with mu
	// released, while producers append to buf.
	w.buf, w.spare = w.spare[:0], nil
	w.writing = true
	var vec [][]byte
	if len(w.lent) > 0 {
		// No loan comes while writing is set: lent stays as it is.
		vec = w.segmentsLocked(b)
	}
	w.mu.Unlock()
	var n int
	var err error
	switch {
	case vec != nil:
		n, err = w.raw.tryWritev(vec)
	case tryOnly:
		n, err = w.raw.tryWrite(b)
	default:
		n, err = w.conn.Write(b)
	}
	w.mu.Lock()
	w.writing = false
	if total := len(b) + w.lentLen; n < total && err == nil {
		// Put back what the socket did not take, before what came since,
		// whose array is then free for the next write.
		var rest []byte
		if vec != nil {
			rest = appendSegments(make([]byte, 0, total-n+len(w.buf)), w.segmentsLocked(b), n)
		} else {
			rest = b[:copy(b, b[n:])]
		}
		b, w.buf = w.buf, append(rest, w.buf...)
	}
	w.dropLoansLocked()
	if b != nil && cap(b) <= maxSpare {
		w.spare = b[:0]
	}
	w.writes++
	if !w.releaseArmed && !w.closed && (cap(w.spare) > smallSpare || cap(w.buf) > smallSpare) {
		w.releaseArmed = true
		w.writesAtTick = w.writes
		if w.release == nil {
			w.release = time.AfterFunc(idleRelease, w.releaseTick)
		} else {
			w.release.Reset(idleRelease)
		}
	}
	if err != nil {
		w.err = err
	}
	if w.aboveHigh && w.pendingLocked() < lowWater {
		w.aboveHigh = false
		if w.drained != nil {
			w.mu.Unlock()
			w.drained()
			w.mu.Lock()
		}
	}
}

// segmentsLocked returns b with the loans in their places, as the
// pieces of a vectored write.
func (w *writer) segmentsLocked(b []byte) [][]byte {
	vec := w.vec[:0]
	prev := 0
	for _, l := range w.lent {
		if l.at > prev {
			vec = append(vec, b[prev:l.at])
		}
		vec = append(vec, l.p)
		prev = l.at
	}
	if len(b) > prev {
		vec = append(vec, b[prev:])
	}
	w.vec = vec
	return vec
}

// appendSegments appends the bytes of vec after the first skip to dst.
func appendSegments(dst []byte, vec [][]byte, skip int) []byte {
	for _, p := range vec {
		if skip >= len(p) {
			skip -= len(p)
			continue
		}
		dst = append(dst, p[skip:]...)
		skip = 0
	}
	return dst
}

// settleLoansLocked copies the lent bytes into the buffer, in their
// places, and so ends the loans.
func (w *writer) settleLoansLocked() {
	if len(w.lent) == 0 {
		return
	}
	var nb []byte
	if cap(w.spare) >= w.pendingLocked() {
		nb, w.spare = w.spare[:0], nil
	}
	nb = appendSegments(nb, w.segmentsLocked(w.buf), 0)
	if w.spare == nil && cap(w.buf) <= maxSpare {
		w.spare = w.buf[:0]
	}
	w.buf = nb
	w.dropLoansLocked()
}

// dropLoansLocked forgets the loans, and the references to their bytes.
func (w *writer) dropLoansLocked() {
	clear(w.lent)
	clear(w.vec)
	w.lent, w.vec = w.lent[:0], w.vec[:0]
	w.lentLen, w.lender = 0, nil
}

// batch collects the writers a reader goroutine wrote to while handling
// the frames of one read, and wakes them once that read is handled: the
// frames one read produces for a connection go out in one write.
//
// lending is set while the reader hands on DATA that lies in its read
// buffer, which it does not touch again before it flushes the batch:
// writers may then refer to the bytes instead of copying them.
type batch struct {
	dirty   []*writer
	lending bool
}

// kickLocked wakes w's write loop now, or when b is flushed; called with
// w.mu held, after appending.
func (w *writer) kickLocked(b *batch) {
	if b == nil {
		w.flushLocked()
		return
	}
	if w.inBatch == nil {
		w.inBatch = b
		b.dirty = append(b.dirty, w)
	}
}

// flush wakes the writers of the batch.
func (b *batch) flush() {
	for i, w := range b.dirty {
		w.mu.Lock()
		if w.inBatch == b {
			w.inBatch = nil
		}
		if w.raw != nil && !w.writing && w.err == nil && w.pendingLocked() > 0 {
			// The socket usually takes it all at once: write it from
			// here, saving the write loop's wake-up.
			w.writeLocked(true, b)
		}
		if w.lender == b {
			w.settleLoansLocked() // the batch's reader reads on
		}
		if w.pendingLocked() > 0 || w.err != nil || w.closed {
			w.flushLocked()
		}
		w.mu.Unlock()
		b.dirty[i] = nil
	}
	b.dirty = b.dirty[:0]
}

// releaseLarge lets go of write buffers grown past smallSpare, once the
// connection has no stream: a connection that carried a large stream
// does not keep its megabytes while it idles or carries small calls.
func (w *writer) releaseLarge() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.releaseLargeLocked()
}

// releaseTick, idleRelease after a write kept a grown buffer, lets go of
// the grown buffers if nothing was written since: a connection whose
// calls go quiet between bursts does not keep its megabytes meanwhile.
func (w *writer) releaseTick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if w.writing || w.writes != w.writesAtTick {
		w.writesAtTick = w.writes
		w.release.Reset(idleRelease)
		return
	}
	w.releaseArmed = false
	w.releaseLargeLocked()
}

func (w *writer) releaseLargeLocked() {
	if cap(w.spare) > smallSpare {
		w.spare = nil
	}
	if w.pendingLocked() == 0 && cap(w.buf) > smallSpare {
		w.buf = nil
	}
}

// flushLocked wakes the write loop. Called with mu held, after appending.
func (w *writer) flushLocked() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// close makes the loop return once what is buffered is written.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	if w.release != nil {
		w.release.Stop()
	}
	w.flushLocked()
	w.mu.Unlock()
}

// room returns how many more DATA bytes the buffer takes now; 0 marks the
// writer as waiting for a drain.
func (w *writer) roomLocked() int {
	if n := w.pendingLocked(); n < highWater {
		return highWater - n
	}
	w.aboveHigh = true
	return 0
}

func (w *writer) frameHeaderLocked(length int, typ http2.FrameType, flags http2.Flags, stream uint32) {
	w.buf = append(w.buf, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags),
		byte(stream>>24)&0x7f, byte(stream>>16), byte(stream>>8), byte(stream))
}

// dataLocked appends DATA frames carrying p, split at the peer's frame
// size; endStream sets END_STREAM on the last. When lender is set, p
// lies in a read buffer that stays as it is until lender is flushed, and
// the writer may refer to it instead of copying it: the frames' payloads
// then go from the read buffer to the socket with a vectored write, the
// proxy's one copy of a stream's bytes saved.
func (w *writer) dataLocked(stream uint32, p []byte, endStream bool, lender *batch) {
	w.sentData = true
	lend := canLend && lender != nil && lender.lending && w.raw != nil && !w.writing &&
		(w.lender == nil || w.lender == lender)
	for {
		n := min(len(p), int(w.peerMaxFrame))
		var flags http2.Flags
		if endStream && n == len(p) {
			flags = http2.FlagDataEndStream
		}
		w.frameHeaderLocked(n, http2.FrameData, flags, stream)
		if lend && n >= minLoan && len(w.lent) < maxLoans {
			if w.lender == nil && w.inBatch != nil && w.inBatch != lender {
				// Another batch will wake the writer, but the loans
				// must end when lender is flushed: it visits too.
				lender.dirty = append(lender.dirty, w)
			}
			w.lent = append(w.lent, loan{at: len(w.buf), p: p[:n]})
			w.lentLen += n
			w.lender = lender
		} else {
			w.buf = append(w.buf, p[:n]...)
		}
		p = p[n:]
		if len(p) == 0 {
			return
		}
	}
}

// headersLocked encodes fields and appends them as HEADERS and, when the
// block is larger than a frame, CONTINUATION frames.
func (w *writer) headersLocked(stream uint32, fields []hpack.HeaderField, endStream bool) {
	w.sentData = true
	w.hbuf = w.hbuf[:0]
	for i, f := range fields {
		w.encodeFieldLocked(i, f)
	}
	block := w.hbuf
	typ := http2.FrameHeaders
	flags := http2.Flags(0)
	if endStream {
		flags |= http2.FlagHeadersEndStream
	}
	for first := true; first || len(block) > 0; first = false {
		n := min(len(block), int(w.peerMaxFrame))
		f := flags
		if n == len(block) {
			f |= http2.FlagHeadersEndHeaders
		}
		if !first {
			typ = http2.FrameContinuation
			f &^= http2.FlagHeadersEndStream
		}
		w.frameHeaderLocked(n, typ, f, stream)
		w.buf = append(w.buf, block[:n]...)
		block = block[n:]
	}
}

// varies reports whether a field's value is new on most calls: deadlines,
// trace context, status messages and details, per-call load reports, and
// binary metadata in general.
func varies(name string) bool {
	switch name {
	case "grpc-timeout", "grpc-message", "traceparent", "tracestate":
		return true
	}
	return strings.HasSuffix(name, "-bin")
}

// cachedField is a header field and its encoding, valid while the
// encoder's dynamic table is the one of generation gen.
type cachedField struct {
	name, value string
	enc         []byte
	gen         uint64
}

// encodeFieldLocked appends the encoding of the i-th field of a block to
// hbuf. A connection's header blocks repeat from call to call, and the
// field at a given position is most often the one it was last time: when
// it is, and nothing was added to the dynamic table since, its encoding
// is the same bytes, which are copied instead of searching the encoder's
// tables (the hash lookups are most of HPACK encoding's cost).
func (w *writer) encodeFieldLocked(i int, f hpack.HeaderField) {
	if varies(f.Name) {
		// A different value every call: indexing it would only push the
		// fields that do repeat out of the table, and move the indices
		// the cache holds; caching its encoding would only cost a copy.
		// Nor is it worth the encoder's table search and Huffman coding:
		// it goes as a literal, never indexed, unless a table size
		// update is due, which the encoder puts first in the block.
		if w.sizeUpdate {
			f.Sensitive = true
			_ = w.enc.WriteField(f)
			w.sizeUpdate = false
			return
		}
		w.hbuf = appendNeverIndexed(w.hbuf, f)
		return
	}
	var slots *[2]cachedField
	if i < len(w.fieldCache) {
		slots = &w.fieldCache[i]
		for _, c := range slots {
			if c.gen == w.tableGen && c.enc != nil && c.name == f.Name && c.value == f.Value {
				w.hbuf = append(w.hbuf, c.enc...)
				return
			}
		}
	}
	start := len(w.hbuf)
	_ = w.enc.WriteField(f) // appends to hbuf, cannot fail
	w.sizeUpdate = false
	enc := w.hbuf[start:]
	switch {
	case enc[0]&0x80 != 0: // indexed: nothing added
	case enc[0]&0xe0 == 0: // literal, not indexed (0000xxxx, 0001xxxx)
	default: // added to the table (or a table size update): indices moved
		w.tableGen++
		return
	}
	if slots != nil {
		// Keep the newer two per position.
		slots[1] = slots[0]
		slots[0] = cachedField{name: f.Name, value: f.Value, enc: append(slots[0].enc[:0:0], enc...), gen: w.tableGen}
	}
}

// peerTableSizeLocked applies the peer's SETTINGS_HEADER_TABLE_SIZE.
func (w *writer) peerTableSizeLocked(size uint32) {
	w.enc.SetMaxDynamicTableSizeLimit(size)
	w.tableGen++ // a smaller table may have evicted cached indices
	w.sizeUpdate = true
}

// appendNeverIndexed appends f as a literal field never indexed, with
// its name and value as plain strings (RFC 7541 6.2.3, 5.2): what
// hpack.Encoder writes for a Sensitive field, without searching its
// tables for the name or Huffman coding.
func appendNeverIndexed(dst []byte, f hpack.HeaderField) []byte {
	dst = append(dst, 0x10)
	dst = appendHpackInt(dst, 7, uint64(len(f.Name)))
	dst = append(dst, f.Name...)
	dst = appendHpackInt(dst, 7, uint64(len(f.Value)))
	return append(dst, f.Value...)
}

// appendHpackInt appends v as an integer with an n-bit prefix (RFC 7541
// 5.1) in a new byte whose other bits are 0: for a string, the Huffman
// flag off.
func appendHpackInt(dst []byte, n uint, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(dst, byte(v))
	}
	dst = append(dst, byte(limit))
	v -= limit
	for v >= 128 {
		dst = append(dst, byte(v&0x7f|0x80))
		v >>= 7
	}
	return append(dst, byte(v))
}

func (w *writer) windowUpdateLocked(stream, incr uint32) {
	w.frameHeaderLocked(4, http2.FrameWindowUpdate, 0, stream)
	w.buf = binary.BigEndian.AppendUint32(w.buf, incr&0x7fffffff)
}

func (w *writer) rstStreamLocked(stream uint32, code http2.ErrCode) {
	w.frameHeaderLocked(4, http2.FrameRSTStream, 0, stream)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(code))
}

func (w *writer) pingLocked(ack bool, data [8]byte) {
	var flags http2.Flags
	if ack {
		flags = http2.FlagPingAck
	}
	w.frameHeaderLocked(8, http2.FramePing, flags, 0)
	w.buf = append(w.buf, data[:]...)
}

// holdAckLocked holds the answer to a PING with data for the next write
// to the peer, which puts it after the frames that go with it: a gRPC
// peer then takes in those frames' DATA before the answer, counts it in
// its bandwidth sample, and does not ping again for it. An answer held
// already goes into the buffer first. It reports whether nothing else
// waits to go to the peer, so that the answer must wait for company
// (Engine.deferAckLocked); a batch that is to wake w (inBatch) may find
// nothing to write by then, so it is no company.
func (w *writer) holdAckLocked(data [8]byte) (alone bool) {
	w.releaseAckLocked()
	w.ackData, w.ackWaiting = data, true
	w.ackGen++
	return w.pendingLocked() == 0
}

// releaseAckLocked puts a held PING answer into the buffer, after what is
// there.
func (w *writer) releaseAckLocked() {
	if w.ackWaiting {
		w.ackWaiting = false
		w.pingLocked(true, w.ackData)
	}
}

func (w *writer) settingsLocked(settings ...http2.Setting) {
	w.frameHeaderLocked(6*len(settings), http2.FrameSettings, 0, 0)
	for _, s := range settings {
		w.buf = binary.BigEndian.AppendUint16(w.buf, uint16(s.ID))
		w.buf = binary.BigEndian.AppendUint32(w.buf, s.Val)
	}
}

func (w *writer) settingsAckLocked() {
	w.frameHeaderLocked(0, http2.FrameSettings, http2.FlagSettingsAck, 0)
}

func (w *writer) goAwayLocked(lastStream uint32, code http2.ErrCode, debug string) {
	w.releaseAckLocked() // a held answer goes ahead of the GOAWAY, not after it
	w.frameHeaderLocked(8+len(debug), http2.FrameGoAway, 0, 0)
	w.buf = binary.BigEndian.AppendUint32(w.buf, lastStream&0x7fffffff)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(code))
	w.buf = append(w.buf, debug...)
}
