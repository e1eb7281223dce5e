package frames

import (
	"errors"
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
	// read is set by the reader on every frame; the keepalive timer
	// clears it.
	read atomic.Bool
	// pingStrikes and lastPing are the reader's.
	pingStrikes int
	lastPing    time.Time
	// lastActive is when the connection last had a call (under c.mu).
	lastActive time.Time

	keepalive, idle, age *time.Timer
}

// startTimers arms the timers of a client connection.
func (c *conn) startTimers() {
	cfg := c.e.cfg
	c.timers.lastActive = time.Now()
	if cfg.Keepalive.Time > 0 {
		c.timers.keepalive = time.AfterFunc(cfg.Keepalive.Time, c.keepaliveTick)
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

func (c *conn) stopTimers() {
	for _, t := range []*time.Timer{c.timers.keepalive, c.timers.idle, c.timers.age} {
		if t != nil {
			t.Stop()
		}
	}
}

// keepaliveTick pings a client that sent nothing for Keepalive.Time, and
// closes it when it still sent nothing Keepalive.Timeout later.
func (c *conn) keepaliveTick() {
	if c.isClosed() {
		return
	}
	if c.timers.read.Swap(false) {
		c.timers.keepalive.Reset(c.e.cfg.Keepalive.Time)
		return
	}
	c.w.mu.Lock()
	c.w.pingLocked(false, [8]byte{'q', 'k', 'a'})
	c.w.flushLocked()
	c.w.mu.Unlock()
	time.AfterFunc(c.e.cfg.Keepalive.Timeout, func() {
		if c.isClosed() {
			return
		}
		if !c.timers.read.Swap(false) {
			c.e.logger.Debug("proxy: client connection closed: no answer to a keepalive ping",
				"client", c.nc.RemoteAddr().String(), "timeout", c.e.cfg.Keepalive.Timeout)
			c.fail(errors.New("keepalive ping not answered"))
			return
		}
		c.timers.keepalive.Reset(c.e.cfg.Keepalive.Time)
	})
}

// onClientPing enforces the keepalive policy on a client's ping; false
// when the client is sent away.
func (c *conn) onClientPing() bool {
	now := time.Now()
	c.w.mu.Lock()
	if c.w.sentData {
		// As in gRPC: pings answering the proxy's data (flow-control
		// estimates) are fine, however frequent.
		c.w.sentData = false
		c.timers.pingStrikes = 0
	}
	c.w.mu.Unlock()
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
	busy := len(c.streams) > 0
	c.mu.Unlock()
	if busy || idleFor < c.e.cfg.MaxConnectionIdle {
		c.timers.idle.Reset(max(c.e.cfg.MaxConnectionIdle-idleFor, c.e.cfg.MaxConnectionIdle/10))
		return
	}
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
