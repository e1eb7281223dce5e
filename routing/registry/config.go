package registry

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/quaestor-go/quaestor/routing"
)

// etcd modes.
const (
	ModeEmbedded = "embedded" // a single-node etcd inside the quaestor process
	ModeExternal = "external" // an etcd cluster run elsewhere
	ModeNone     = "none"     // no etcd: static endpoints only
)

// EtcdConfig is the `etcd:` section.
type EtcdConfig struct {
	// Mode is embedded, external or none. Default embedded.
	Mode string `koanf:"mode"`
	// Endpoints are the client URLs of the external cluster (external
	// mode), e.g. ["https://10.0.0.1:2379", "https://10.0.0.2:2379"].
	Endpoints []string `koanf:"endpoints"`
	// Dir is the embedded etcd's data directory. Default "data/etcd".
	Dir string `koanf:"dir"`
	// ClientURL is where the embedded etcd serves clients; keep it on
	// loopback. Default "http://127.0.0.1:2379".
	ClientURL string `koanf:"client_url"`
	// PeerURL is the embedded etcd's peer URL. Default
	// "http://127.0.0.1:2380".
	PeerURL string `koanf:"peer_url"`
	// Prefix starts every key quaestor writes. Default "/quaestor".
	Prefix string `koanf:"prefix"`
	// StartTimeout bounds the embedded etcd's start. Default 30s.
	StartTimeout time.Duration `koanf:"start_timeout"`
	// AutoCompaction is the revision history the embedded etcd keeps
	// (periodic compaction). Default 1h.
	AutoCompaction time.Duration `koanf:"auto_compaction"`
	// DialTimeout bounds connecting to etcd. Default 5s.
	DialTimeout time.Duration `koanf:"dial_timeout"`
	// RequestTimeout bounds each etcd request. Default 5s.
	RequestTimeout time.Duration `koanf:"request_timeout"`
	// Username and Password authenticate to an external cluster with auth
	// enabled. Default none.
	Username string `koanf:"username"`
	Password string `koanf:"password"`
	// TLS configures client TLS to an external cluster: ca verifies the
	// servers (empty: the system roots, for https endpoints), cert and key
	// are the client certificate for clusters that require one,
	// server_name overrides the name checked. Files are read again when
	// they change.
	TLS routing.TLSConfig `koanf:"tls"`
}

// Config is the `registry:` section.
type Config struct {
	// Scope separates groups of services sharing one etcd (environments,
	// tenants). Default "default".
	Scope string `koanf:"scope"`
	// LeaseTTL is how long a registration outlives its registrant's last
	// keep-alive. Minimum 2s (etcd's). Default 10s.
	LeaseTTL time.Duration `koanf:"lease_ttl"`
	// AllowedNetworks, when set, lists the networks (CIDR, e.g.
	// 10.0.0.0/8, 127.0.0.0/8) a registered address may be in; entries
	// pointing elsewhere, or at a host name, are skipped and logged, so a
	// write to etcd cannot send traffic anywhere. Default: any address.
	AllowedNetworks []string `koanf:"allowed_networks"`
}

// Defaults.
const (
	DefaultLeaseTTL = 10 * time.Second
	MinLeaseTTL     = 2 * time.Second
)

// DefaultEtcdConfig returns the etcd section's defaults.
func DefaultEtcdConfig() EtcdConfig {
	return EtcdConfig{
		Mode:           ModeEmbedded,
		Dir:            "data/etcd",
		ClientURL:      "http://127.0.0.1:2379",
		PeerURL:        "http://127.0.0.1:2380",
		Prefix:         DefaultPrefix,
		StartTimeout:   30 * time.Second,
		AutoCompaction: time.Hour,
		DialTimeout:    5 * time.Second,
		RequestTimeout: 5 * time.Second,
	}
}

// DefaultConfig returns the registry section's defaults.
func DefaultConfig() Config {
	return Config{Scope: DefaultScope, LeaseTTL: DefaultLeaseTTL}
}

// Validate returns an error naming the first key with a bad value.
func (c EtcdConfig) Validate() error {
	switch c.Mode {
	case ModeEmbedded:
		if c.Dir == "" {
			return fmt.Errorf("etcd.dir: empty, the embedded etcd needs a data directory")
		}
		if err := validateURL("etcd.client_url", c.ClientURL); err != nil {
			return err
		}
		if err := validateURL("etcd.peer_url", c.PeerURL); err != nil {
			return err
		}
		if c.StartTimeout <= 0 {
			return fmt.Errorf("etcd.start_timeout: %s, want more than 0", c.StartTimeout)
		}
		if c.AutoCompaction < 0 {
			return fmt.Errorf("etcd.auto_compaction: %s is negative", c.AutoCompaction)
		}
	case ModeExternal:
		if len(c.Endpoints) == 0 {
			return fmt.Errorf("etcd.endpoints: empty, external mode needs the cluster's client URLs")
		}
		for i, ep := range c.Endpoints {
			if err := validateURL(fmt.Sprintf("etcd.endpoints[%d]", i), ep); err != nil {
				return err
			}
		}
		if err := c.TLS.Validate("etcd.tls"); err != nil {
			return err
		}
		if (c.Username == "") != (c.Password == "") {
			return fmt.Errorf("etcd.username and etcd.password: give both or neither")
		}
	case ModeNone:
		return nil
	default:
		return fmt.Errorf("etcd.mode: %q is not embedded, external or none", c.Mode)
	}
	if !strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/") && c.Prefix != "/" {
		return fmt.Errorf("etcd.prefix: %q, want a path starting with / and not ending with /, e.g. /quaestor", c.Prefix)
	}
	if c.DialTimeout <= 0 {
		return fmt.Errorf("etcd.dial_timeout: %s, want more than 0", c.DialTimeout)
	}
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("etcd.request_timeout: %s, want more than 0", c.RequestTimeout)
	}
	return nil
}

func validateURL(key, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: %q is not an http:// or https:// URL with a host", key, raw)
	}
	if u.Port() == "" {
		return fmt.Errorf("%s: %q has no port", key, raw)
	}
	return nil
}

// Validate returns an error naming the first key with a bad value.
func (c Config) Validate() error {
	if _, err := ParseNetworks(c.AllowedNetworks); err != nil {
		return err
	}
	if err := routing.ValidateServiceName(c.Scope); err != nil || c.Scope == "" {
		return fmt.Errorf("registry.scope: %q, want a non-empty name without '/' or white space", c.Scope)
	}
	if c.LeaseTTL < MinLeaseTTL {
		return fmt.Errorf("registry.lease_ttl: %s is below etcd's minimum of %s", c.LeaseTTL, MinLeaseTTL)
	}
	return nil
}

// ParseNetworks reads registry.allowed_networks.
func ParseNetworks(cidrs []string) ([]netip.Prefix, error) {
	prefixes := make([]netip.Prefix, 0, len(cidrs))
	for i, cidr := range cidrs {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return nil, fmt.Errorf("registry.allowed_networks[%d]: %q is not a network in CIDR form (e.g. 10.0.0.0/8)", i, cidr)
		}
		prefixes = append(prefixes, p.Masked())
	}
	return prefixes, nil
}
