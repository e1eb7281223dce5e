package frames

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// Keepalive configures the pings on client connections: the proxy's, to
// find dead clients, and the limits on the clients'.
type Keepalive struct {
	// Time: with nothing read for this long, the proxy pings the client;
	// Timeout later, with still nothing read, it closes the connection.
	// 0 turns the pings off.
	Time, Timeout time.Duration
	// MinTime is the least time between a client's pings; a client
	// pinging more often (3 times) is sent a GOAWAY ("too_many_pings")
	// and closed. With PermitWithoutStream false, pings while the client
	// has no call count too.
	MinTime             time.Duration
	PermitWithoutStream bool
}

// maxPingStrikes is how many pings too early a client is forgiven, as in
// gRPC.
const maxPingStrikes = 2

// connTimers are a client connection's keepalive, idle and age timers.
type connTimers struct {
	// lastRead is when the reader last read from the network, pingSent
	// when the keepalive ping waiting for an answer went (0: none);
	// unix nanoseconds.
	lastRead, pingSent atomic.Int64
	// pingStrikes and lastPing are the reader's.
	pingStrikes int
	lastPing    time.Time
	// lastActive is when the connection last had a call (under c.mu).
	lastActive time.Time

	keepalive, idle, age *time.Timer
	// release runs releaseTick; growReadBuffer makes and sets it, under
	// c.mu.
	release *time.Timer
}

// keepaliveConfig is the connection's side of the keepalive settings.
func (c *conn) keepaliveConfig() Keepalive {
	if c.backend != nil {
		return c.e.cfg.BackendKeepalive
	}
	return c.e.cfg.Keepalive
}

// startTimers arms the timers of a connection: keepalive for both
// sides, idle and age for clients.
func (c *conn) startTimers() {
	cfg := c.e.cfg
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.timers.lastActive = time.Now()
	c.timers.lastRead.Store(c.timers.lastActive.UnixNano())
	if c.local {
		return
	}
	if ka := c.keepaliveConfig(); ka.Time > 0 {
		c.timers.keepalive = time.AfterFunc(ka.Time, c.keepaliveTick)
	}
	if c.backend != nil {
		return
	}
	if cfg.MaxConnectionIdle > 0 {
		c.timers.idle = time.AfterFunc(cfg.MaxConnectionIdle, c.idleTick)
	}
	if cfg.MaxConnectionAge > 0 {
		// ±10 % so that connections made together do not all go at once.
		age := cfg.MaxConnectionAge + time.Duration((rand.Float64()*0.2-0.1)*float64(cfg.MaxConnectionAge))
		c.timers.age = time.AfterFunc(age, c.ageReached)
	}
}

// stopTimers stops the timers; called with mu held, as the connection
// closes.
func (c *conn) stopTimersLocked() {
	for _, t := range []*time.Timer{c.timers.keepalive, c.timers.idle, c.timers.age, c.timers.release} {
		if t != nil {
			t.Stop()
		}
	}
}

// keepaliveTick pings a peer that sent nothing for Keepalive.Time, and
// closes the connection when it still sent nothing Keepalive.Timeout
// after the ping. A backend connection without calls is not pinged.
func (c *conn) keepaliveTick() {
	ka := c.keepaliveConfig()
	c.mu.Lock()
	closed, idle := c.closed, len(c.streams) == 0
	c.mu.Unlock()
	if closed {
		return
	}
	now := time.Now().UnixNano()
	lastRead := c.timers.lastRead.Load()
	if sent := c.timers.pingSent.Load(); sent != 0 {
		switch {
		case lastRead >= sent:
			c.timers.pingSent.Store(0) // answered, or something else came
		case time.Duration(now-sent) >= ka.Timeout:
			peer := "client"
			if c.backend != nil {
				peer = "backend"
			}
			c.e.logger.Warn("proxy: connection closed: no answer to a keepalive ping",
				peer, c.nc.RemoteAddr().String(), "timeout", ka.Timeout)
			c.fail(fmt.Errorf("no answer to a keepalive ping within %s", ka.Timeout))
			return
		default:
			c.resetKeepalive(min(ka.Timeout-time.Duration(now-sent), ka.Time))
			return
		}
	}
	if quiet := time.Duration(now - lastRead); quiet < ka.Time {
		c.resetKeepalive(ka.Time - quiet)
		return
	}
	if c.backend != nil && idle {
		c.resetKeepalive(ka.Time)
		return
	}
	c.timers.pingSent.Store(now)
	c.w.mu.Lock()
	c.w.pingLocked(false, [8]byte{'q', 'k', 'a'})
	c.w.flushLocked()
	c.w.mu.Unlock()
	c.resetKeepalive(min(ka.Timeout, ka.Time))
}

// resetKeepalive arms the keepalive timer again, unless the connection
// closed.
func (c *conn) resetKeepalive(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.timers.keepalive.Reset(d)
	}
}

// onClientPing enforces the keepalive policy on a client's ping, which
// answersData when the proxy sent DATA or HEADERS since the client's
// last ping; false when the client is sent away.
func (c *conn) onClientPing(answersData bool) bool {
	now := time.Now()
	if answersData {
		// As in gRPC: pings answering the proxy's data (flow-control
		// estimates) are fine, however frequent.
		c.timers.pingStrikes = 0
	}
	c.mu.Lock()
	streams := len(c.streams)
	c.mu.Unlock()
	ka := c.e.cfg.Keepalive
	tooEarly := false
	if streams == 0 && !ka.PermitWithoutStream {
		tooEarly = !c.timers.lastPing.IsZero() && now.Sub(c.timers.lastPing) < 2*time.Hour
	} else {
		tooEarly = !c.timers.lastPing.IsZero() && now.Sub(c.timers.lastPing) < ka.MinTime
	}
	c.timers.lastPing = now
	if !tooEarly {
		return true
	}
	c.timers.pingStrikes++
	if c.timers.pingStrikes <= maxPingStrikes {
		return true
	}
	c.e.logger.Warn("proxy: client sent away: pings more often than proxy.keepalive.min_time",
		"client", c.nc.RemoteAddr().String(), "min_time", ka.MinTime)
	c.goAway(http2.ErrCodeEnhanceYourCalm, "too_many_pings")
	return false
}

// idleTick sends away a client that had no call for MaxConnectionIdle.
func (c *conn) idleTick() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	idleFor := time.Since(c.timers.lastActive)
	if len(c.streams) > 0 || idleFor < c.e.cfg.MaxConnectionIdle {
		c.timers.idle.Reset(max(c.e.cfg.MaxConnectionIdle-idleFor, c.e.cfg.MaxConnectionIdle/10))
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.closeWhenIdle()
}

// ageReached sends away a client connection older than MaxConnectionAge;
// its calls have MaxConnectionAgeGrace to end.
func (c *conn) ageReached() {
	if c.isClosed() {
		return
	}
	c.closeWhenIdle()
	if grace := c.e.cfg.MaxConnectionAgeGrace; grace > 0 {
		time.AfterFunc(grace, func() { c.fail(errors.New("proxy.max_connection_age_grace is over")) })
	}
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
