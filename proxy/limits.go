package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of the client limits. Each is chosen so that legitimate clients
// never meet it: long streams and large messages keep working, and only
// clients that hold resources without using them are cut off.
const (
	// DefaultMaxConnections is far above what one proxy's clients open
	// (gRPC clients multiplex their calls over one connection per
	// backend address) and small enough that their buffers and goroutines
	// stay within a few hundred MiB (18 KiB of RSS per idle connection,
	// measured with 2,000 on a `quaestor proxy`).
	DefaultMaxConnections = 10000
	// DefaultMaxConcurrentStreams lets one client process funnel thousands
	// of concurrent calls through its single connection, as gRPC clients
	// do, while bounding what one connection can hold.
	DefaultMaxConcurrentStreams = 4096
	// DefaultMaxHeaderListSize holds bearer tokens, trace context and
	// ordinary binary metadata many times over; it is close to Envoy's
	// default (60 KiB) and far below gRPC's own (16 MiB).
	DefaultMaxHeaderListSize = 64 << 10
	// DefaultConnectionTimeout is ample for a TLS handshake over a slow
	// link and short enough that half-open connections (slowloris) do not
	// pile up: gRPC's own default is 120s.
	DefaultConnectionTimeout = 10 * time.Second
	// DefaultKeepaliveTime pings a connection after a minute without a
	// frame from its client, so a client that vanished without closing
	// (host down, cable cut) is found within Time+Timeout, instead of
	// gRPC's default of two hours.
	DefaultKeepaliveTime = time.Minute
	// DefaultKeepaliveTimeout is gRPC's: a ping unanswered this long closes
	// the connection. It is also the connection's TCP_USER_TIMEOUT.
	DefaultKeepaliveTimeout = 20 * time.Second
	// DefaultKeepaliveMinTime accepts any gRPC client's keepalive (gRPC
	// clients never ping more often than every 10s) and stops ping floods.
	// gRPC's own default, 5 minutes, would send GOAWAY too_many_pings to
	// clients configured with a common 30s or 1m keepalive.
	DefaultKeepaliveMinTime = 10 * time.Second

	// minKeepaliveTime is gRPC's floor for the server's ping interval.
	minKeepaliveTime = time.Second
	// minHeaderListSize leaves room for the headers every call carries
	// (:path, :authority, content-type, te, user-agent, grpc-timeout).
	minHeaderListSize = 1 << 10
	// refusedLogInterval is how often refused connections are logged: a
	// flood of connections must not flood the log too.
	refusedLogInterval = 10 * time.Second
)

// KeepaliveConfig is `proxy.keepalive`: the pings the proxy sends to find
// dead clients, and the limit on the pings clients send.
type KeepaliveConfig struct {
	// Time is how long a connection may go without a frame from its client
	// before the proxy pings it. At least 1s. Default 1m.
	Time time.Duration `koanf:"time"`
	// Timeout is how long the proxy waits for the ping's answer (and for
	// the client to acknowledge data sent to it) before closing the
	// connection. Default 20s.
	Timeout time.Duration `koanf:"timeout"`
	// MinTime is the shortest interval at which a client may ping; a
	// client that pings more often gets GOAWAY ENHANCE_YOUR_CALM
	// "too_many_pings" and its connection is closed. 0 means any interval.
	// Default 10s.
	MinTime time.Duration `koanf:"min_time"`
	// PermitWithoutStream lets clients ping while they have no call open,
	// as clients that keep idle connections warm do. Default true.
	PermitWithoutStream bool `koanf:"permit_without_stream"`
}

// DefaultKeepaliveConfig returns the keepalive section with its defaults.
func DefaultKeepaliveConfig() KeepaliveConfig {
	return KeepaliveConfig{
		Time:                DefaultKeepaliveTime,
		Timeout:             DefaultKeepaliveTimeout,
		MinTime:             DefaultKeepaliveMinTime,
		PermitWithoutStream: true,
	}
}

// validateLimits returns an error naming the first limit with a bad value.
func (c Config) validateLimits() error {
	if c.MaxConnections < 0 {
		return fmt.Errorf("proxy.max_connections: %d is negative, want 0 (no limit) or more", c.MaxConnections)
	}
	if c.MaxConcurrentStreams < 0 || c.MaxConcurrentStreams > math.MaxUint32 {
		return fmt.Errorf("proxy.max_concurrent_streams: %d is out of range, want 0 (no limit) to %d", c.MaxConcurrentStreams, uint32(math.MaxUint32))
	}
	if c.MaxHeaderListSize < minHeaderListSize || c.MaxHeaderListSize > math.MaxUint32 {
		return fmt.Errorf("proxy.max_header_list_size: %d is out of range, want %d to %d bytes", c.MaxHeaderListSize, minHeaderListSize, uint32(math.MaxUint32))
	}
	if c.ConnectionTimeout <= 0 {
		return fmt.Errorf("proxy.connection_timeout: %s is not positive", c.ConnectionTimeout)
	}
	if c.Keepalive.Time < minKeepaliveTime {
		return fmt.Errorf("proxy.keepalive.time: %s is below the minimum, %s", c.Keepalive.Time, minKeepaliveTime)
	}
	if c.Keepalive.Timeout <= 0 {
		return fmt.Errorf("proxy.keepalive.timeout: %s is not positive", c.Keepalive.Timeout)
	}
	if c.Keepalive.MinTime < 0 {
		return fmt.Errorf("proxy.keepalive.min_time: %s is negative", c.Keepalive.MinTime)
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{
		{"proxy.max_connection_idle", c.MaxConnectionIdle},
		{"proxy.max_connection_age", c.MaxConnectionAge},
		{"proxy.max_connection_age_grace", c.MaxConnectionAgeGrace},
	} {
		if d.value < 0 {
			return fmt.Errorf("%s: %s is negative, want 0 (never) or more", d.key, d.value)
		}
	}
	return nil
}

// connLimiter counts the server's open client connections over all its
// listeners and refuses those beyond max.
type connLimiter struct {
	max int64 // 0: no limit
	// userTimeout is set as TCP_USER_TIMEOUT on accepted connections,
	// as gRPC servers do when keepalive is on: data a dead client leaves
	// unacknowledged closes its connection.
	userTimeout time.Duration
	logger      *slog.Logger
	now         func() time.Time

	open    atomic.Int64
	refused atomic.Int64 // since the last log line
	nextLog atomic.Int64 // unix nanoseconds
}

func newConnLimiter(cfg Config, logger *slog.Logger) *connLimiter {
	return &connLimiter{
		max:         int64(cfg.MaxConnections),
		userTimeout: cfg.Keepalive.Timeout,
		logger:      logger,
		now:         time.Now,
	}
}

// listener wraps lis so that it counts and limits its connections and
// sets their TCP_USER_TIMEOUT. With neither, lis is returned as it is.
func (l *connLimiter) listener(lis net.Listener) net.Listener {
	if l.max == 0 && l.userTimeout == 0 {
		return lis
	}
	return &limitedListener{Listener: lis, limiter: l}
}

// refuse closes a connection over the limit and logs, at most once per
// refusedLogInterval, how many were refused.
func (l *connLimiter) refuse(conn net.Conn) {
	// Closing at once, rather than leaving the connection in the accept
	// queue, fails the client fast: gRPC clients see UNAVAILABLE and
	// retry with backoff, or try another proxy.
	_ = conn.Close()
	l.refused.Add(1)
	now := l.now().UnixNano()
	next := l.nextLog.Load()
	if now < next || !l.nextLog.CompareAndSwap(next, now+int64(refusedLogInterval)) {
		return
	}
	l.logger.Warn("proxy: refusing connections: proxy.max_connections reached",
		"max_connections", l.max, "refused", l.refused.Swap(0), "client", conn.RemoteAddr().String(),
		"next_report_in", refusedLogInterval)
}

type limitedListener struct {
	net.Listener
	limiter *connLimiter
}

// Accept returns the next connection within the limit; it refuses those
// over it itself, so the server never sees them.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.limiter.max == 0 {
			setUserTimeout(conn, l.limiter.userTimeout)
			return conn, nil
		}
		if l.limiter.open.Add(1) > l.limiter.max {
			l.limiter.open.Add(-1)
			l.limiter.refuse(conn)
			continue
		}
		setUserTimeout(conn, l.limiter.userTimeout)
		counted := &countedConn{Conn: conn}
		counted.release = sync.OnceFunc(func() { l.limiter.open.Add(-1) })
		return counted, nil
	}
}

// countedConn gives its slot back when closed, once.
type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

// SyscallConn hands on the socket's raw connection, which the forwarding
// engine writes through without blocking when it can.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

// Connections returns the number of client connections open now, when
// proxy.max_connections limits them (0 otherwise).
func (s *Server) Connections() int64 {
	return s.conns.open.Load()
}
