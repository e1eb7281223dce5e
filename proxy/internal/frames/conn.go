package frames

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// Windows the proxy advertises on every connection, both sides. The
// connection window is given back as DATA is read, so it only needs to
// cover what is in flight; the stream window bounds what the proxy holds
// per stream when the other side of the call is slower.
const (
	streamWindow = 256 << 10
	// maxStreamWindow bounds a stream's window, grown while the other
	// side of the call keeps up: what the proxy may hold per stream.
	maxStreamWindow = 4 << 20
	connWindow      = 16 << 20
	initialWindow   = 65535 // HTTP/2's initial window, before SETTINGS
	// Read buffers: a connection starts with a small one, most of what
	// an idle connection costs, grows it in steps while bulk data comes
	// (see growReadBuffer) and goes back to the small one when it stops
	// (shrinkReadBuffer): a connection that carries small calls to one
	// of a thousand backends keeps 4 KiB, one carrying streams reads up
	// to 256 KiB at a time. A backend connection's read then holds
	// several DATA frames of each of its streams, and the writes to
	// their clients are as large: with 64 KiB, a read held about one
	// 16 KiB frame per client, and each was a write of its own.
	initialReadBuf = 4 << 10
	bulkReadBuf    = 64 << 10
	maxReadBuf     = 256 << 10
	// smallReadsToShrink reads in a row, each under a sixteenth of a
	// grown buffer, take a connection back to the small one.
	smallReadsToShrink = 16
	// idleRelease: a connection that has waited this long for the
	// network gives back its grown read buffer, and a writer that has
	// written nothing for this long its grown buffers, though their
	// calls stay open: a stream quiet between bursts keeps 4 KiB to
	// read, not 256, and nothing of the megabytes it wrote from.
	idleRelease = 2 * time.Second
	maxStreamID = 1<<31 - 1
	// maxFrameSize is the largest frame the proxy reads: HTTP/2's
	// default SETTINGS_MAX_FRAME_SIZE, which it does not raise.
	maxFrameSize = 16384
)

// conn is one HTTP/2 connection: a client's (the proxy serves it) or a
// backend's (the proxy is its client).
type conn struct {
	e  *Engine
	nc net.Conn
	w  *writer
	// sock is what br reads the connection through; br and fr are
	// replaced when the read buffer grows.
	sock socketReader
	br   *bufio.Reader
	fr   *http2.Framer
	hr   *headerReader
	// backend is set on backend connections; host is a client's address
	// as x-forwarded-for gives it.
	backend *Backend
	host    string
	// local is set on a client connection of the process itself
	// (Engine.ServeLocal).
	local bool

	mu      sync.Mutex
	streams map[uint32]*call
	// brSize is br's size, brPeak the largest it has been
	// (readBufferSize).
	brSize, brPeak int
	// peerInitialWin is the peer's SETTINGS_INITIAL_WINDOW_SIZE: the send
	// window of each new stream.
	peerInitialWin int64
	closed         bool
	// goingAway: no new streams (a GOAWAY was sent or received).
	goingAway bool
	// lastPeerStream is the highest stream the client opened.
	lastPeerStream uint32
	// nextID is the next stream a backend connection opens.
	nextID uint32
	// peerMaxStreams is the peer's SETTINGS_MAX_CONCURRENT_STREAMS.
	peerMaxStreams uint32
	// closeWhenIdle: the connection closes when its last stream ends.
	idleClose bool
	// goAwaySent: the peer was sent a GOAWAY, which should reach it
	// before the connection closes.
	goAwaySent bool
	done       chan struct{}
	// settled is closed when the peer's first SETTINGS frame arrives: a
	// backend that sent none is not speaking HTTP/2 (yet).
	settled     chan struct{}
	settledOnce sync.Once

	// sendWin (the peer's connection window) and blocked (the halves
	// waiting for it, or for writer room) are guarded by w.mu.
	sendWin int64
	blocked []*half

	timers connTimers

	// recvOwed is connection window owed to the peer, recvAvail what
	// the peer may still send; rb is the reader's batch. Reader only.
	recvOwed  uint32
	recvAvail int64
	rb        batch
}

func newConn(e *Engine, nc net.Conn, backend *Backend) *conn {
	c := &conn{
		e:              e,
		nc:             nc,
		w:              newWriter(nc),
		backend:        backend,
		streams:        make(map[uint32]*call),
		peerInitialWin: initialWindow,
		sendWin:        initialWindow,
		recvAvail:      connWindow,
		peerMaxStreams: ^uint32(0),
		nextID:         1,
		done:           make(chan struct{}),
		settled:        make(chan struct{}),
	}
	c.w.drained = func() { c.wakeBlocked(nil) }
	c.sock.nc, c.sock.raw = nc, newRawReader(nc)
	c.setReader(getReader(initialReadBuf, &c.sock))
	c.hr = newHeaderReader(e.cfg.MaxHeaderListSize)
	return c
}

// setReader makes br the connection's read buffer, with a Framer on it.
func (c *conn) setReader(br *bufio.Reader) {
	c.mu.Lock()
	c.brSize = br.Size()
	c.brPeak = max(c.brPeak, c.brSize)
	c.mu.Unlock()
	c.br = br
	c.sock.size, c.sock.smallReads = br.Size(), 0
	c.fr = http2.NewFramer(nil, br)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(maxFrameSize)
}

// readBufferSize is the read buffer's size and the largest it has been,
// for tests; the reader goroutine may replace the buffer, so it is read
// under the connection's lock from there.
func (c *conn) readBufferSize() (size, peak int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.brSize, c.brPeak
}

// socketReader reads the connection for its read buffer of size bytes,
// and notes when a read filled the room there was (more data was likely
// waiting) and how many reads in a row took little. held is what a
// replaced buffer held, given to the new one before anything else.
//
// waiting is set while the reader waits for a frame with nothing
// buffered (waitForData); release asks such a wait to end, with a read
// deadline already past (releaseTick). A read cut short by it returns
// errReleaseBuffer while waiting, and reads on otherwise: a frame read
// halfway must not lose its bytes.
type socketReader struct {
	nc         net.Conn
	raw        *rawReader
	size       int
	held       []byte
	filled     bool
	smallReads int
	waiting    bool
	release    atomic.Bool
}

// errReleaseBuffer ends a wait for the network so that the reader can
// give back its grown read buffer before waiting on.
var errReleaseBuffer = errors.New("frames: read buffer released while idle")

func (r *socketReader) Read(p []byte) (int, error) {
	if len(r.held) > 0 {
		n := copy(p, r.held)
		r.held = r.held[n:]
		return n, nil
	}
	var (
		n   int
		err error
	)
	for {
		if r.raw != nil {
			n, err = r.raw.read(p)
		} else {
			n, err = r.nc.Read(p)
		}
		if n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) || !r.release.Swap(false) {
			break
		}
		_ = r.nc.SetReadDeadline(time.Time{})
		if r.waiting {
			return 0, errReleaseBuffer
		}
	}
	r.filled = n >= initialReadBuf/2 && n == len(p)
	if n < r.size/16 {
		r.smallReads++
	} else {
		r.smallReads = 0
	}
	return n, err
}

// growReadBuffer replaces the read buffer by the next larger one
// (bulkReadBuf, then maxReadBuf), keeping what it holds, when bulk data
// comes: a read filled it, or a DATA frame does not fit in it (and would
// be copied by the Framer). Only between header blocks: the new Framer
// expects none to be open.
func (c *conn) growReadBuffer() {
	size := c.br.Size()
	if size >= maxReadBuf || c.hr.open {
		return
	}
	c.rb.flush() // writers may hold loans of the old buffer's bytes
	buffered, _ := c.br.Peek(c.br.Buffered())
	c.sock.held = append(bytes.Clone(buffered), c.sock.held...)
	next := bulkReadBuf
	if size >= bulkReadBuf {
		next = maxReadBuf
	}
	c.replaceReader(next)
	c.mu.Lock()
	if !c.closed {
		if c.timers.release == nil {
			c.timers.release = time.AfterFunc(idleRelease, c.releaseTick)
		} else {
			c.timers.release.Reset(idleRelease)
		}
	}
	c.mu.Unlock()
}

// releaseTick, idleRelease after a read buffer grew and then every
// idleRelease while it stays grown, cuts short the reader's wait for the
// network once nothing has come for idleRelease (waitForData then gives
// the buffer back).
func (c *conn) releaseTick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.brSize <= initialReadBuf {
		return // growReadBuffer sets the timer again
	}
	next := idleRelease
	if quiet := time.Since(time.Unix(0, c.timers.lastRead.Load())); quiet < idleRelease {
		next -= quiet
	} else if c.sock.release.CompareAndSwap(false, true) {
		_ = c.nc.SetReadDeadline(time.Now())
	}
	c.timers.release.Reset(next)
}

// waitForData waits for the network with nothing buffered. A wait cut
// short by releaseTick gives back the grown read buffer and waits on
// with the small one.
func (c *conn) waitForData() error {
	for {
		c.sock.waiting = true
		_, err := c.br.Peek(1)
		c.sock.waiting = false
		if !errors.Is(err, errReleaseBuffer) {
			return err
		}
		if c.br.Size() > initialReadBuf {
			c.replaceReader(initialReadBuf)
		}
	}
}

// replaceReader gives the reader a buffer of size bytes from the pool,
// and the old one, whose bytes are read or kept in sock.held, back.
func (c *conn) replaceReader(size int) {
	old := c.br
	c.setReader(getReader(size, &c.sock))
	putReader(old)
}

// shrinkReadBuffer goes back to a small read buffer once bulk data has
// stopped: before a read from the network with nothing buffered, when no
// call is open on the connection or smallReadsToShrink reads in a row
// took little. One that goes quiet mid-call gives it back after
// idleRelease (waitForData).
func (c *conn) shrinkReadBuffer() {
	if c.br.Size() <= initialReadBuf || c.br.Buffered() > 0 || len(c.sock.held) > 0 || c.hr.open {
		return
	}
	if c.sock.smallReads < smallReadsToShrink {
		c.mu.Lock()
		open := len(c.streams)
		c.mu.Unlock()
		if open > 0 {
			return
		}
	}
	c.replaceReader(initialReadBuf)
}

// readers keeps the read buffers connections gave back, by size, so
// that connections whose bulk data comes in bursts do not allocate and
// zero a large buffer for each.
var readers = map[int]*sync.Pool{
	initialReadBuf: {},
	bulkReadBuf:    {},
	maxReadBuf:     {},
}

func getReader(size int, src io.Reader) *bufio.Reader {
	if br, ok := readers[size].Get().(*bufio.Reader); ok {
		br.Reset(src)
		return br
	}
	return bufio.NewReaderSize(src, size)
}

// putReader pools br, which no frame read from it may still use: the
// frame handlers copy what they keep, as bufio reuses its buffer on
// every read anyway.
func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers[br.Size()].Put(br)
}

// writeSettings sends the proxy's SETTINGS and connection window.
func (c *conn) writeSettingsLocked() {
	settings := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		{ID: http2.SettingMaxHeaderListSize, Val: c.e.cfg.MaxHeaderListSize},
	}
	if c.backend == nil && !c.local {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.e.cfg.MaxConcurrentStreams})
	} else {
		settings = append(settings, http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	c.w.settingsLocked(settings...)
	c.w.windowUpdateLocked(0, connWindow-initialWindow)
}

// start runs the connection's writer and reader.
func (c *conn) start() {
	c.e.wg.Add(2)
	go func() {
		defer c.e.wg.Done()
		if err := c.w.loop(); err != nil {
			c.fail(err)
		}
	}()
	go func() {
		defer c.e.wg.Done()
		c.startTimers()
		c.fail(c.readLoop())
	}()
}

func (c *conn) readLoop() error {
	defer c.rb.flush()
	for {
		if c.sock.filled {
			c.sock.filled = false
			c.growReadBuffer()
		}
		fromNetwork := !c.frameBuffered()
		if fromNetwork {
			if len(c.rb.dirty) > 0 {
				// Let the goroutines ready to run go first: mostly other
				// readers woken by the same poll, whose frames for the
				// writers of this batch then go out in the same write.
				// Over 1,000 backend connections, each read bringing one
				// call's answer, that is 1.2 writes per call instead of
				// 2.1 (bench/optimizations.md).
				runtime.Gosched()
			}
			c.rb.flush()
			c.shrinkReadBuffer()
			if c.br.Buffered() == 0 {
				if err := c.waitForData(); err != nil {
					return err
				}
			}
		}
		var f http2.Frame
		direct, err := c.readDirect()
		if !direct {
			f, err = c.fr.ReadFrame()
		}
		if fromNetwork {
			c.timers.lastRead.Store(time.Now().UnixNano())
		}
		if direct {
			if err != nil {
				return err // the handler has told the peer
			}
			continue
		}
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.onStreamError(se)
				continue
			}
			var ce http2.ConnectionError
			switch {
			case errors.As(err, &ce):
				c.goAway(http2.ErrCode(ce), err.Error())
			case errors.Is(err, http2.ErrFrameTooLarge):
				c.goAway(http2.ErrCodeFrameSize, err.Error())
			}
			return err
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			if err := c.onHeaderFragment(c.hr.headers(f.StreamID, f.HeaderBlockFragment(), f.StreamEnded(), f.HeadersEnded())); err != nil {
				return err
			}
		case *http2.ContinuationFrame:
			if err := c.onHeaderFragment(c.hr.continuation(f)); err != nil {
				return err
			}
		case *http2.DataFrame:
			if err := c.onData(f.StreamID, f.Header().Length, f.Data(), f.StreamEnded()); err != nil {
				return err
			}
		case *http2.WindowUpdateFrame:
			c.onWindowUpdate(f)
		case *http2.RSTStreamFrame:
			if call := c.lookup(f.StreamID); call != nil {
				call.onReset(&c.rb, c, f.ErrCode)
			}
		case *http2.SettingsFrame:
			if err := c.onSettings(f); err != nil {
				return err
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.w.mu.Lock()
				answersData := c.w.sentData
				c.w.sentData = false
				c.w.mu.Unlock()
				if c.backend == nil && !c.local && !c.onClientPing(answersData) {
					return errors.New("too many pings")
				}
				c.w.mu.Lock()
				if c.w.holdAckLocked(f.Data) {
					// Nothing else for this peer (a write under way
					// may have taken what there was): the answer waits
					// for company (see pingack.go).
					class := ackPrompt
					if answersData {
						class = ackPatient
					}
					c.e.deferAckLocked(c.w, class)
				} else {
					c.w.kickLocked(&c.rb)
				}
				c.w.mu.Unlock()
			}
		case *http2.GoAwayFrame:
			c.onGoAway(f)
		}
	}
}

// frameBuffered reports whether a whole frame is in the read buffer, so
// that reading it will not block.
func (c *conn) frameBuffered() bool {
	n := c.br.Buffered()
	if n < frameHeaderLen {
		return false
	}
	hdr, _ := c.br.Peek(frameHeaderLen)
	return n >= frameHeaderLen+frameLength(hdr)
}

// frameLength is the payload length a frame header gives.
func frameLength(hdr []byte) int { return int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2]) }

// onHeaderFragment hands on a header block once it is complete.
func (c *conn) onHeaderFragment(done bool, err error) error {
	if err != nil {
		code := http2.ErrCodeCompression
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			code = http2.ErrCode(ce)
		}
		c.goAway(code, err.Error())
		return err
	}
	if !done {
		return nil
	}
	hb := &c.hr.block
	if hb.malformed != "" {
		c.onStreamError(http2.StreamError{StreamID: hb.streamID, Code: http2.ErrCodeProtocol, Cause: errors.New(hb.malformed)})
		return nil
	}
	return c.onHeaders(hb)
}

func (c *conn) lookup(id uint32) *call {
	c.mu.Lock()
	call := c.streams[id]
	c.mu.Unlock()
	return call
}

// readDirect handles the next frame when it is a DATA frame without
// padding, or a HEADERS frame without padding or priority that holds a
// whole header block, and it fits in the read buffer: its payload goes
// to the call (or the HPACK decoder) straight from the buffer, sparing
// the copy and the frame value the Framer makes of it. Large DATA
// payloads are then lent to the other side's writer, which sends them
// from there when it is not busy writing (see writer.dataLocked): no
// copy in the proxy's user space at all. It reports whether it did. Any
// other frame (and any frame inside an unfinished header block, a
// protocol error) is left to the Framer and its checks; so is a read
// error, which the Framer meets again.
func (c *conn) readDirect() (bool, error) {
	hdr, err := c.br.Peek(frameHeaderLen)
	if err != nil || c.hr.open {
		return false, nil
	}
	typ, flags := http2.FrameType(hdr[3]), http2.Flags(hdr[4])
	switch {
	case typ == http2.FrameData && !flags.Has(http2.FlagDataPadded):
	case typ == http2.FrameHeaders && flags.Has(http2.FlagHeadersEndHeaders) &&
		!flags.Has(http2.FlagHeadersPadded) && !flags.Has(http2.FlagHeadersPriority):
	default:
		return false, nil
	}
	n := frameLength(hdr)
	id := binary.BigEndian.Uint32(hdr[5:]) & maxStreamID
	if id == 0 || n > maxFrameSize {
		return false, nil
	}
	if frameHeaderLen+n > c.br.Size() {
		if typ != http2.FrameData || c.br.Size() >= maxReadBuf {
			return false, nil
		}
		c.growReadBuffer()
	}
	frame, err := c.br.Peek(frameHeaderLen + n)
	if err != nil {
		return false, nil
	}
	payload := frame[frameHeaderLen:]
	if typ == http2.FrameData {
		// The payload stays in the read buffer until the next read from
		// the network, which the batch's flush comes before: it is lent.
		c.rb.lending = true
		err = c.onData(id, uint32(n), payload, flags.Has(http2.FlagDataEndStream))
		c.rb.lending = false
	} else {
		err = c.onHeaderFragment(c.hr.headers(id, payload, flags.Has(http2.FlagHeadersEndStream), true))
	}
	_, _ = c.br.Discard(frameHeaderLen + n) // cannot fail: it is buffered
	return true, err
}

// frameHeaderLen is the length of an HTTP/2 frame header.
const frameHeaderLen = 9

// onData handles a DATA frame of length bytes (padding included) whose
// payload, padding removed, is p: valid only during the call.
func (c *conn) onData(id, length uint32, p []byte, endStream bool) error {
	if n := length; n > 0 {
		c.recvAvail -= int64(n)
		if c.recvAvail < 0 {
			// RFC 9113 6.9.1: a connection error.
			c.goAway(http2.ErrCodeFlowControl, "DATA beyond the connection's flow-control window")
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.recvOwed += n
		if c.recvOwed >= connWindow/4 {
			c.w.mu.Lock()
			c.w.windowUpdateLocked(0, c.recvOwed)
			c.w.kickLocked(&c.rb)
			c.w.mu.Unlock()
			c.recvAvail += int64(c.recvOwed)
			c.recvOwed = 0
		}
	}
	if call := c.lookup(id); call != nil {
		call.onData(&c.rb, c, p, endStream, length-uint32(len(p)))
	}
	return nil
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) {
	if f.StreamID == 0 {
		c.w.mu.Lock()
		c.sendWin += int64(f.Increment)
		c.w.mu.Unlock()
		c.wakeBlocked(&c.rb)
		return
	}
	if call := c.lookup(f.StreamID); call != nil {
		call.onWindowUpdate(&c.rb, c, int64(f.Increment))
	}
}

// wakeBlocked pushes the halves that waited for this connection's window
// or writer room.
func (c *conn) wakeBlocked(b *batch) {
	c.w.mu.Lock()
	blocked := c.blocked
	c.blocked = nil
	c.w.mu.Unlock()
	for _, h := range blocked {
		h.c.lock(b)
		h.queued = false
		h.pushLocked()
		h.c.unlock()
	}
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var delta int64
	var changed bool
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxFrameSize:
			c.w.mu.Lock()
			c.w.peerMaxFrame = s.Val
			c.w.mu.Unlock()
		case http2.SettingHeaderTableSize:
			c.w.mu.Lock()
			c.w.peerTableSizeLocked(s.Val)
			c.w.mu.Unlock()
		case http2.SettingMaxConcurrentStreams:
			c.mu.Lock()
			c.peerMaxStreams = s.Val
			c.mu.Unlock()
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			delta += int64(s.Val) - c.peerInitialWin
			c.peerInitialWin = int64(s.Val)
			c.mu.Unlock()
			changed = true
		}
		return nil
	})
	if err != nil {
		c.goAway(http2.ErrCodeProtocol, err.Error())
		return err
	}
	var calls []*call
	if changed && delta != 0 {
		// The streams open now change by delta; streams opened from here
		// on start from the new value.
		c.mu.Lock()
		calls = make([]*call, 0, len(c.streams))
		for _, call := range c.streams {
			calls = append(calls, call)
		}
		c.mu.Unlock()
	}
	c.w.mu.Lock()
	c.w.settingsAckLocked()
	c.w.kickLocked(&c.rb)
	c.w.mu.Unlock()
	c.settledOnce.Do(func() { close(c.settled) })
	for _, call := range calls {
		call.onWindowUpdate(&c.rb, c, delta)
	}
	return nil
}

func (c *conn) onStreamError(se http2.StreamError) {
	c.w.mu.Lock()
	c.w.rstStreamLocked(se.StreamID, se.Code)
	c.w.flushLocked()
	c.w.mu.Unlock()
	if call := c.lookup(se.StreamID); call != nil {
		call.onReset(&c.rb, c, se.Code)
	}
}

// goAway tells the peer the connection ends, with the last stream the
// proxy processed.
func (c *conn) goAway(code http2.ErrCode, debug string) {
	c.mu.Lock()
	c.goingAway = true
	c.goAwaySent = true
	last := c.lastPeerStream
	c.mu.Unlock()
	c.w.mu.Lock()
	c.w.goAwayLocked(last, code, debug)
	c.w.flushLocked()
	c.w.mu.Unlock()
}

func (c *conn) onGoAway(f *http2.GoAwayFrame) {
	if f.ErrCode != http2.ErrCodeNo {
		c.e.logger.Warn("proxy: peer sent GOAWAY", "addr", c.nc.RemoteAddr().String(), "code", f.ErrCode.String(), "debug", string(f.DebugData()))
	}
	c.mu.Lock()
	c.goingAway = true
	var unprocessed []*call
	if c.backend != nil {
		for id, call := range c.streams {
			if id > f.LastStreamID {
				unprocessed = append(unprocessed, call)
			}
		}
	}
	c.mu.Unlock()
	if c.backend != nil {
		c.backend.forget(c)
		c.closeWhenIdle()
	}
	for _, call := range unprocessed {
		call.onLost(&c.rb, c, errors.New("the backend is going away (GOAWAY) and did not process the call"), true)
	}
}

// fail ends the connection and every call on it.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	streams := c.streams
	c.streams = nil
	flushFirst := c.goAwaySent
	c.stopTimersLocked()
	c.mu.Unlock()
	c.w.close()
	if flushFirst {
		// Let the GOAWAY go out, unless the peer does not read.
		select {
		case <-c.w.stopped:
		case <-time.After(100 * time.Millisecond):
		}
	}
	_ = c.nc.Close()
	close(c.done)
	c.e.untrack(c)
	if c.backend != nil {
		c.backend.forget(c)
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("connection closed")
	}
	for _, call := range streams {
		call.onLost(nil, c, err, false)
	}
}

// remove forgets stream id.
func (c *conn) remove(id uint32) {
	c.mu.Lock()
	delete(c.streams, id)
	empty := len(c.streams) == 0
	if empty {
		c.timers.lastActive = time.Now()
	}
	idle := c.idleClose && empty && !c.closed
	c.mu.Unlock()
	if empty {
		c.w.releaseLarge()
	}
	if idle {
		c.closeAfterWrites()
	}
}

// closeWhenIdle takes no new streams and closes the connection once the
// streams open now have ended. A client is told with a GOAWAY.
func (c *conn) closeWhenIdle() {
	if c.backend == nil {
		c.goAway(http2.ErrCodeNo, "")
	}
	c.mu.Lock()
	c.goingAway = true
	c.idleClose = true
	idle := len(c.streams) == 0 && !c.closed
	c.mu.Unlock()
	if idle {
		c.closeAfterWrites()
	}
}

// closeAfterWrites closes the connection once what is buffered is
// written.
func (c *conn) closeAfterWrites() {
	c.e.wg.Add(1)
	go func() {
		defer c.e.wg.Done()
		c.w.close()
		select {
		case <-c.w.stopped:
		case <-time.After(time.Second):
		}
		c.fail(errors.New("connection closed by the proxy"))
	}()
}

// rst resets stream id; b is the caller's batch, if any.
func (c *conn) rst(b *batch, id uint32, code http2.ErrCode) {
	c.w.mu.Lock()
	c.w.rstStreamLocked(id, code)
	c.w.kickLocked(b)
	c.w.mu.Unlock()
}
