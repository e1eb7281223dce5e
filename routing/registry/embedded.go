package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// EmbeddedOptions configure an embedded etcd member.
type EmbeddedOptions struct {
	// Name of the member. Default "quaestor".
	Name string
	// Dir is the data directory; created if missing. Required.
	Dir string
	// ClientURL and PeerURL are where the member listens. Required.
	ClientURL, PeerURL string
	// InitialCluster lists every member as name=peerURL,... for a member
	// of a multi-member cluster. Default: this member alone.
	InitialCluster string
	// StartTimeout bounds the start (for a cluster: until it has a
	// leader). Default 30s.
	StartTimeout time.Duration
	// AutoCompaction is the history kept by periodic compaction; 0 keeps
	// all. Default 0.
	AutoCompaction time.Duration
	// Logger receives etcd's own logs, from LogLevel up. Default
	// slog.Default().
	Logger *slog.Logger
	// LogLevel is the least level of etcd's logs that are kept: debug,
	// info, warn or error. Default "error": a single embedded member's
	// warnings are about its deployment, which quaestor chose.
	LogLevel string
}

// EmbeddedFromConfig returns the options of the embedded etcd cfg
// describes.
func EmbeddedFromConfig(cfg EtcdConfig, logger *slog.Logger) EmbeddedOptions {
	return EmbeddedOptions{
		Logger:         logger,
		Dir:            cfg.Dir,
		ClientURL:      cfg.ClientURL,
		PeerURL:        cfg.PeerURL,
		StartTimeout:   cfg.StartTimeout,
		AutoCompaction: cfg.AutoCompaction,
	}
}

// Embedded is an etcd member running in this process.
type Embedded struct {
	etcd      *embed.Etcd
	clientURL string
	closing   *atomic.Bool
}

// StartEmbedded starts an etcd member and waits until it serves, or fails
// with an error naming the cause (a port in use, a data directory that
// cannot be written, a start that takes too long).
func StartEmbedded(opts EmbeddedOptions) (*Embedded, error) {
	if opts.Dir == "" || opts.ClientURL == "" || opts.PeerURL == "" {
		return nil, errors.New("registry: StartEmbedded: Dir, ClientURL and PeerURL are required")
	}
	if opts.Name == "" {
		opts.Name = "quaestor"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "error"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	level, err := zapcore.ParseLevel(opts.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("registry: embedded etcd log level: %w", err)
	}
	clientURL, err := url.Parse(opts.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd.client_url %q: %w", opts.ClientURL, err)
	}
	peerURL, err := url.Parse(opts.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd.peer_url %q: %w", opts.PeerURL, err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd.dir %s: %w", opts.Dir, err)
	}
	// etcd itself only logs a failure to write its data directory: try it.
	probe, err := os.CreateTemp(opts.Dir, ".quaestor-write-probe-")
	if err != nil {
		return nil, fmt.Errorf("etcd.dir %s is not writable: %w", opts.Dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())

	cfg := embed.NewConfig()
	cfg.Name = opts.Name
	cfg.Dir = opts.Dir
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = opts.InitialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = opts.Name + "=" + opts.PeerURL
	}
	cfg.InitialClusterToken = "quaestor"
	if opts.AutoCompaction > 0 {
		cfg.AutoCompactionMode = "periodic"
		cfg.AutoCompactionRetention = opts.AutoCompaction.String()
	}
	closing := new(atomic.Bool)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(opts.Logger, level, closing))

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("registry: starting the embedded etcd (client %s, peer %s, dir %s): %w",
			opts.ClientURL, opts.PeerURL, opts.Dir, err)
	}
	timer := time.NewTimer(opts.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return &Embedded{etcd: e, clientURL: opts.ClientURL, closing: closing}, nil
	case err := <-e.Err():
		closing.Store(true)
		e.Close()
		return nil, fmt.Errorf("registry: the embedded etcd failed to start: %w", err)
	case <-timer.C:
		closing.Store(true)
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("registry: the embedded etcd did not become ready within etcd.start_timeout (%s); for a cluster member, are the other members up?", opts.StartTimeout)
	}
}

// ClientURL is where the member serves clients.
func (e *Embedded) ClientURL() string { return e.clientURL }

// Err reports a failure of the running member.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops the member and releases its ports and data directory.
//
// The member itself stops first. etcd's own Close drains the client
// connections for up to its request timeout (7s) while the member runs
// on; in that time it answers no keep-alive, expires the leases of the
// registrants it no longer hears, and sends the deletions down the watches
// still open: every proxy would drop instances that are alive, until they
// register again after the restart.
func (e *Embedded) Close() {
	e.closing.Store(true)
	if e.etcd.Server != nil {
		e.etcd.Server.Stop()
	}
	e.etcd.Close()
}
