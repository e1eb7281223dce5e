package proxy

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/quaestor-go/quaestor/routing"
)

// Config is the `proxy:` section of the configuration.
type Config struct {
	// Listen is the address the proxy serves gRPC on. Default
	// "127.0.0.1:5150".
	Listen string `koanf:"listen"`
	// Advertise is the host:port other machines reach this proxy at, as
	// registered in etcd for the look-aside discovery. Default: the listen
	// address, with this machine's host name when it listens on all
	// interfaces.
	Advertise string `koanf:"advertise"`
	// Policy is the balancing policy of services without their own (see
	// routing.Policies). Default "least-loaded". Validated by routing.
	Policy string `koanf:"policy"`
	// MaxMessageSize is the largest message, in bytes, the proxy forwards
	// in either direction; larger ones fail the call with
	// RESOURCE_EXHAUSTED naming this key. Default 64 MiB.
	MaxMessageSize int `koanf:"max_message_size"`
	// DrainTimeout bounds how long in-flight calls may run after a drain
	// starts (SIGTERM, SIGINT); calls still running then are cancelled.
	// Default 30s.
	DrainTimeout time.Duration `koanf:"drain_timeout"`
	// AccessLog logs one line per proxied call: method, client, backend,
	// code, duration, bytes each way. Default false.
	AccessLog bool `koanf:"access_log"`
	// TLS makes the listener serve TLS: cert and key are the proxy's
	// certificate; ca, when set, requires client certificates it signed
	// (mutual TLS). Files are read again when they change. Default:
	// plaintext.
	TLS routing.TLSConfig `koanf:"tls"`

	// The limits below keep a hostile or broken client from taking the
	// proxy down or starving other clients (see limits.go).

	// MaxConnections bounds the client connections open at once; further
	// ones are closed as soon as they are accepted, and logged once per
	// interval. 0 means no limit. Default 10000.
	MaxConnections int `koanf:"max_connections"`
	// MaxConcurrentStreams is the number of calls one connection may have
	// open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); a client's
	// further calls wait for one to end. 0 means no limit. Default 4096.
	MaxConcurrentStreams int `koanf:"max_concurrent_streams"`
	// MaxHeaderListSize bounds a call's metadata, in bytes as HTTP/2
	// counts them (names, values and 32 bytes per field, uncompressed).
	// Default 65536 (64 KiB).
	MaxHeaderListSize int `koanf:"max_header_list_size"`
	// ConnectionTimeout bounds the time a new connection has to finish
	// its TLS handshake and send the HTTP/2 preface and first SETTINGS
	// frame; slower ones are closed. Default 10s.
	ConnectionTimeout time.Duration `koanf:"connection_timeout"`
	// Keepalive sets the pings that find dead clients and the limits on
	// the pings clients send.
	Keepalive KeepaliveConfig `koanf:"keepalive"`
	// MaxConnectionIdle closes, with a GOAWAY, a connection that has had
	// no call for this long. 0 means never. Default 0.
	MaxConnectionIdle time.Duration `koanf:"max_connection_idle"`
	// MaxConnectionAge closes, with a GOAWAY, a connection this old (±10%
	// jitter): clients then reconnect, and may reach another proxy. 0
	// means never. Default 0.
	MaxConnectionAge time.Duration `koanf:"max_connection_age"`
	// MaxConnectionAgeGrace is how long calls may run on after
	// MaxConnectionAge before the connection is closed under them. 0
	// means until they end. Default 0.
	MaxConnectionAgeGrace time.Duration `koanf:"max_connection_age_grace"`
}

// Defaults used by DefaultConfig.
const (
	DefaultListen         = "127.0.0.1:5150"
	DefaultMaxMessageSize = 64 << 20
	DefaultDrainTimeout   = 30 * time.Second
	// maxMessageSizeLimit is the largest length a gRPC frame can state.
	maxMessageSizeLimit = 1<<31 - 1
)

// DefaultConfig returns the configuration with every default set.
func DefaultConfig() Config {
	return Config{
		Listen:         DefaultListen,
		Policy:         "least-loaded",
		MaxMessageSize: DefaultMaxMessageSize,
		DrainTimeout:   DefaultDrainTimeout,

		MaxConnections:       DefaultMaxConnections,
		MaxConcurrentStreams: DefaultMaxConcurrentStreams,
		MaxHeaderListSize:    DefaultMaxHeaderListSize,
		ConnectionTimeout:    DefaultConnectionTimeout,
		Keepalive:            DefaultKeepaliveConfig(),
	}
}

// Validate returns an error naming the first key with a bad value.
func (c Config) Validate() error {
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return fmt.Errorf("proxy.listen: %q is not host:port", c.Listen)
	}
	if c.Advertise != "" {
		if host, port, err := net.SplitHostPort(c.Advertise); err != nil || host == "" || port == "" || port == "0" {
			return fmt.Errorf("proxy.advertise: %q is not host:port", c.Advertise)
		}
	}
	if c.MaxMessageSize <= 0 || c.MaxMessageSize > maxMessageSizeLimit {
		return fmt.Errorf("proxy.max_message_size: %d is out of range, want 1 to %d bytes", c.MaxMessageSize, maxMessageSizeLimit)
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("proxy.drain_timeout: %s is negative", c.DrainTimeout)
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if c.TLS.Enabled() {
		if c.TLS.Cert == "" {
			return fmt.Errorf("proxy.tls.cert: empty, serving TLS needs a certificate and key")
		}
		if c.TLS.ServerName != "" {
			return fmt.Errorf("proxy.tls.server_name: %q, only backends' TLS takes a server name", c.TLS.ServerName)
		}
		if err := c.TLS.Validate("proxy.tls"); err != nil {
			return err
		}
	}
	return nil
}

// AdvertiseAddr returns the address to register for this proxy, given the
// address it listens on.
func (c Config) AdvertiseAddr(listening net.Addr) string {
	if c.Advertise != "" {
		return c.Advertise
	}
	host, port, err := net.SplitHostPort(listening.String())
	if err != nil {
		return listening.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil {
			host = name
		}
	}
	return net.JoinHostPort(host, port)
}
