package routing

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// BackendConfig is the `backends:` section: how the proxy's connections to
// backend instances (calls and health probes) find out that a peer is
// gone when nothing tells them, as when its machine or process hangs
// with the TCP connection still open.
type BackendConfig struct {
	// KeepaliveTime is how long a connection with calls on it may receive
	// nothing before it is pinged; 0 turns pings off, otherwise at least
	// 10s (gRPC's floor). A backend refuses pings more frequent than its
	// keepalive enforcement allows (gRPC servers: 5m unless configured)
	// by closing the connection, calls and all, so lower it only for
	// backends that allow it. Default 5m.
	KeepaliveTime time.Duration `koanf:"keepalive_time"`
	// KeepaliveTimeout is how long a ping may go unanswered before the
	// connection is closed and its calls fail with UNAVAILABLE. Default
	// 20s.
	KeepaliveTimeout time.Duration `koanf:"keepalive_timeout"`
}

// DefaultBackendConfig returns the backends section's defaults.
func DefaultBackendConfig() BackendConfig {
	return BackendConfig{KeepaliveTime: 5 * time.Minute, KeepaliveTimeout: 20 * time.Second}
}

// minKeepaliveTime is gRPC's floor on ping intervals; lower values are
// raised to it with a warning.
const minKeepaliveTime = 10 * time.Second

// Validate returns an error naming the first key with a bad value.
func (c BackendConfig) Validate() error {
	switch {
	case c.KeepaliveTime < 0 || (c.KeepaliveTime > 0 && c.KeepaliveTime < minKeepaliveTime):
		return fmt.Errorf("backends.keepalive_time: %s, want 0 (off) or at least %s", c.KeepaliveTime, minKeepaliveTime)
	case c.KeepaliveTimeout <= 0:
		return fmt.Errorf("backends.keepalive_timeout: %s, want more than 0", c.KeepaliveTimeout)
	}
	return nil
}

// DialOptions returns the dial options that set up keepalive, none when it
// is off.
func (c BackendConfig) DialOptions() []grpc.DialOption {
	if c.KeepaliveTime <= 0 {
		return nil
	}
	return []grpc.DialOption{grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time:    c.KeepaliveTime,
		Timeout: c.KeepaliveTimeout,
		// Idle connections are not pinged: nothing is lost on them, and
		// servers count such pings against the client.
		PermitWithoutStream: false,
	})}
}
