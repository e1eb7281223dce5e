package frames

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one backend endpoint: the engine keeps one HTTP/2
// connection to it at a time (a new one once the current one stops taking
// streams), made when a call first needs it.
type Backend struct {
	e    *Engine
	addr string
	dial func(ctx context.Context) (net.Conn, error)
	tls  *tls.Config

	mu sync.Mutex
	// current takes new streams; dialing is set while a connection is
	// being made, and waiting are the calls queued for it.
	current *conn
	dialing bool
	waiting []*call
	// failedUntil is the end of the wait after a failed dial; lastErr
	// that dial's error.
	failedUntil time.Time
	backoff     time.Duration
	lastErr     error
	removed     bool
	// ready mirrors current != nil, for Ready's fast path.
	ready atomic.Bool
	// used is set by every call, cleared by the engine's sweep.
	used atomic.Bool
}

// Dial backoff after failed connection attempts.
const (
	minDialBackoff = 200 * time.Millisecond
	maxDialBackoff = 10 * time.Second
)

// Addr is the backend's address.
func (b *Backend) Addr() string { return b.addr }

// Ready reports whether the backend has a connection taking calls. When
// it has none, it starts making one (unless one is being made, or the
// last attempt failed and its backoff is not over), so that a backend
// routing passes over while it connects is ready for later calls.
func (b *Backend) Ready() bool {
	if b.ready.Load() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.current != nil {
		return true
	}
	if !b.dialing && !b.removed && !time.Now().Before(b.failedUntil) {
		b.dialing = true
		b.e.wg.Add(1)
		go b.connect()
	}
	return false
}

// Failing reports whether the last connection attempt failed and the
// backend is waiting before the next: routing should prefer others.
func (b *Backend) Failing(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current == nil && now.Before(b.failedUntil)
}

// attachLocked opens c's stream on the backend, or queues c until a
// connection is made. Called with c.mu held.
func (b *Backend) attachLocked(c *call) {
	b.used.Store(true)
	for {
		b.mu.Lock()
		bc := b.current
		if bc == nil {
			break
		}
		b.mu.Unlock()
		if c.openLocked(bc) {
			return
		}
		// Full (the backend's SETTINGS_MAX_CONCURRENT_STREAMS) or going
		// away: calls go to a new connection, this one closes when its
		// streams are done.
		b.forget(bc)
		bc.closeWhenIdle()
	}
	var st Status
	switch {
	case b.removed:
		// Forgotten by the engine since it was routed to (idle, or
		// removed): routed again, the call gets its successor.
		st = statusUnavailable(fmt.Sprintf("quaestor: backend %s was removed", b.addr))
	case !b.dialing && time.Now().Before(b.failedUntil):
		st = statusUnavailable(fmt.Sprintf("quaestor: backend %s is unreachable: %v", b.addr, b.lastErr))
	default:
		b.waiting = append(b.waiting, c)
		if !b.dialing {
			b.dialing = true
			b.e.wg.Add(1)
			go b.connect()
		}
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	// The call never reached the backend: another may take it.
	if !c.retryLocked(true, st) {
		c.failLocked(st)
	}
}

// idle reports whether no call is on the backend or waiting for it.
func (b *Backend) idle() bool {
	b.mu.Lock()
	bc, waiting := b.current, len(b.waiting)
	b.mu.Unlock()
	if waiting > 0 {
		return false
	}
	if bc == nil {
		return true
	}
	bc.mu.Lock()
	defer bc.mu.Unlock()
	return len(bc.streams) == 0
}

// forget stops giving bc new streams.
func (b *Backend) forget(bc *conn) {
	b.mu.Lock()
	if b.current == bc {
		b.current = nil
		b.ready.Store(false)
	}
	b.mu.Unlock()
}

func (b *Backend) connect() {
	defer b.e.wg.Done()
	bc, err := b.newConn()
	b.mu.Lock()
	b.dialing = false
	waiting := b.waiting
	b.waiting = nil
	if err != nil {
		b.lastErr = err
		b.backoff = min(max(2*b.backoff, minDialBackoff), maxDialBackoff)
		b.failedUntil = time.Now().Add(b.backoff)
		backoff := b.backoff
		b.mu.Unlock()
		b.e.logger.Warn("proxy: connecting to backend failed", "addr", b.addr, "error", err, "retry_in", backoff)
		for _, c := range waiting {
			c.onBackendFailed(b, err)
		}
		return
	}
	b.backoff = 0
	b.failedUntil = time.Time{}
	if b.removed {
		b.mu.Unlock()
		bc.fail(errors.New("backend removed"))
		for _, c := range waiting {
			c.onBackendFailed(b, errors.New("backend removed"))
		}
		return
	}
	b.current = bc
	b.ready.Store(true)
	b.mu.Unlock()
	for _, c := range waiting {
		c.mu.Lock()
		if !c.finished && c.target == b && c.backend == nil {
			if !c.openLocked(bc) {
				// Full already: onto the next connection.
				b.attachLocked(c)
			}
		}
		c.mu.Unlock()
	}
}

// newConn dials the backend and starts an HTTP/2 connection on it.
func (b *Backend) newConn() (*conn, error) {
	ctx, cancel := context.WithTimeout(b.e.ctx, b.e.cfg.DialTimeout)
	defer cancel()
	nc, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	if b.tls != nil {
		cfg := b.tls
		if len(cfg.NextProtos) == 0 {
			cfg = cfg.Clone()
			cfg.NextProtos = []string{"h2"}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		nc = tc
	}
	bc := newConn(b.e, nc, b)
	bc.w.mu.Lock()
	bc.w.buf = append(bc.w.buf, clientPreface...)
	bc.writeSettingsLocked()
	bc.w.flushLocked()
	bc.w.mu.Unlock()
	if !b.e.track(bc) {
		_ = nc.Close()
		return nil, errors.New("proxy is closing")
	}
	bc.start()
	// Like gRPC, take the connection into use once the backend has
	// spoken HTTP/2: a listener that accepts and says nothing gets no
	// call.
	select {
	case <-bc.settled:
		return bc, nil
	case <-bc.done:
		return nil, errors.New("the backend closed the connection before its HTTP/2 SETTINGS")
	case <-ctx.Done():
		bc.fail(errors.New("no HTTP/2 SETTINGS from the backend"))
		return nil, fmt.Errorf("no HTTP/2 SETTINGS from the backend within %s", b.e.cfg.DialTimeout)
	}
}

// close ends the backend's connections gracefully: calls on them run to
// their end, new calls fail.
func (b *Backend) close() {
	b.mu.Lock()
	b.removed = true
	bc := b.current
	b.current = nil
	b.ready.Store(false)
	b.mu.Unlock()
	if bc != nil {
		bc.closeWhenIdle()
	}
}

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
