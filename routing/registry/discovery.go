package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/quaestor-go/quaestor/routing"
)

// SourceEtcd is the routing.Table source name of etcd registrations.
const SourceEtcd = "etcd"

// DiscoveryOptions configure a Discovery.
type DiscoveryOptions struct {
	// Client is the etcd client. Required; Discovery does not close it.
	Client *clientv3.Client
	// Table receives the endpoints. Required.
	Table *routing.Table
	// Prefix and Scope select the keys. Defaults DefaultPrefix and
	// DefaultScope.
	Prefix string
	Scope  string
	// RequestTimeout bounds each list. Default 5s.
	RequestTimeout time.Duration
	// Logger receives gaps, recoveries and skipped entries. Default
	// slog.Default().
	Logger *slog.Logger
	// AllowedNetworks, when not empty, are the only networks registered
	// addresses may be in (see Config.AllowedNetworks).
	AllowedNetworks []netip.Prefix
}

// Discovery follows the registrations of one scope into a routing.Table:
// it lists the scope, then watches from the next revision; when the watch
// fails (compaction, lost leader, etcd unreachable) it lists and watches
// again with backoff. Until then the table keeps the last known endpoints,
// so calls go on while etcd is away.
type Discovery struct {
	opts        DiscoveryOptions
	scopePrefix string

	// known is what etcd holds, by service and key; only the discovery
	// goroutine touches it.
	known map[string]map[string]routing.Endpoint

	synced    atomic.Bool // listed at least once
	watching  atomic.Bool // a watch is running now
	connected atomic.Bool // the client's connection to etcd is up
	restarts  atomic.Int64
	skipped   atomic.Int64
	lastErr   atomic.Pointer[error]
	revision  atomic.Int64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// DiscoveryStatus is what a Discovery reports about itself, for /readyz
// and metrics.
type DiscoveryStatus struct {
	// Synced is true once the scope was listed; Watching while a watch is
	// open; Connected while the client reaches etcd. A gap, during which
	// the table keeps the last known endpoints, is any of them false.
	Synced, Watching, Connected bool
	// Restarts counts the lists and watches started again after a failure.
	Restarts int64
	// Skipped counts the malformed entries ignored.
	Skipped int64
	// Revision is the etcd revision the table reflects.
	Revision int64
	// LastError is the last failure, or nil.
	LastError error
}

// StartDiscovery starts following the registrations. It returns at once;
// use Status or WaitSynced to know when the first list is in.
func StartDiscovery(opts DiscoveryOptions) (*Discovery, error) {
	if opts.Client == nil || opts.Table == nil {
		return nil, errors.New("registry: StartDiscovery: Options.Client and Options.Table are required")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Scope == "" {
		opts.Scope = DefaultScope
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	d := &Discovery{
		opts:        opts,
		scopePrefix: ScopePrefix(opts.Prefix, opts.Scope),
		known:       make(map[string]map[string]routing.Endpoint),
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.run(ctx)
	}()
	go func() {
		defer d.wg.Done()
		d.followConnection(ctx)
	}()
	return d, nil
}

// Ready reports whether the table reflects etcd now: listed, watching and
// connected.
func (s DiscoveryStatus) Ready() bool { return s.Synced && s.Watching && s.Connected }

// followConnection tracks whether the client reaches etcd: the etcd client
// resumes a watch by itself after a reconnection, so the watch alone does
// not show an outage.
func (d *Discovery) followConnection(ctx context.Context) {
	conn := d.opts.Client.ActiveConnection()
	state := conn.GetState()
	reportedDown := false
	for {
		up := state == connectivity.Ready || state == connectivity.Idle
		d.connected.Store(up)
		switch {
		case !up && !reportedDown && d.synced.Load():
			reportedDown = true
			d.opts.Logger.Warn("registry: etcd unreachable; routing on the last known endpoints", "prefix", d.scopePrefix, "state", state.String())
		case up && reportedDown:
			reportedDown = false
			d.opts.Logger.Info("registry: etcd reachable again", "prefix", d.scopePrefix)
		}
		if state == connectivity.Idle {
			conn.Connect()
		}
		if !conn.WaitForStateChange(ctx, state) {
			return
		}
		state = conn.GetState()
	}
}

// Close stops following etcd. The table keeps what it holds.
func (d *Discovery) Close() {
	d.cancel()
	d.wg.Wait()
}

// Status reports the discovery's state.
func (d *Discovery) Status() DiscoveryStatus {
	s := DiscoveryStatus{
		Synced:    d.synced.Load(),
		Watching:  d.watching.Load(),
		Connected: d.connected.Load(),
		Restarts:  d.restarts.Load(),
		Skipped:   d.skipped.Load(),
		Revision:  d.revision.Load(),
	}
	if err := d.lastErr.Load(); err != nil {
		s.LastError = *err
	}
	return s
}

// WaitSynced waits until the first list is in the table, or ctx ends.
func (d *Discovery) WaitSynced(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !d.synced.Load() {
		select {
		case <-ctx.Done():
			err := ctx.Err()
			if last := d.lastErr.Load(); last != nil {
				err = fmt.Errorf("%w: %w", err, *last)
			}
			return fmt.Errorf("registry: waiting for the first list of %s: %w", d.scopePrefix, err)
		case <-tick.C:
		}
	}
	return nil
}

func (d *Discovery) run(ctx context.Context) {
	retry := newBackoff()
	for {
		watched, err := d.listAndWatch(ctx)
		d.watching.Store(false)
		if ctx.Err() != nil {
			return
		}
		if watched {
			// The watch had been working: retry at once-ish, not after
			// the backoff of a long outage.
			retry.reset()
		}
		d.lastErr.Store(&err)
		d.restarts.Add(1)
		d.opts.Logger.Warn("registry: discovery gap: listing and watching again; routing on the last known endpoints",
			"prefix", d.scopePrefix, "revision", d.revision.Load(), "error", err)
		if !retry.wait(ctx) {
			return
		}
	}
}

// listAndWatch lists the scope into the table, then applies the watch's
// events until it fails. It returns whether the watch started, and why it
// stopped.
func (d *Discovery) listAndWatch(ctx context.Context) (watched bool, err error) {
	rev, err := d.list(ctx)
	if err != nil {
		return false, err
	}
	// WithRequireLeader: a member cut off from its cluster ends the watch
	// instead of keeping it open and silent.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	watch := d.opts.Client.Watch(wctx, d.scopePrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
	d.watching.Store(true)
	for resp := range watch {
		if err := resp.Err(); err != nil {
			if resp.CompactRevision != 0 {
				return true, fmt.Errorf("watch compacted at revision %d: %w", resp.CompactRevision, err)
			}
			return true, fmt.Errorf("watch failed: %w", err)
		}
		touched := make(map[string]bool)
		for _, ev := range resp.Events {
			if service, ok := d.apply(ev); ok {
				touched[service] = true
			}
		}
		for service := range touched {
			d.publish(service)
		}
		d.revision.Store(resp.Header.Revision)
	}
	if ctx.Err() != nil {
		return true, ctx.Err()
	}
	return true, errors.New("watch channel closed")
}

// list reads the whole scope and replaces the table's etcd endpoints with
// it, so nothing that changed during a gap is missed.
func (d *Discovery) list(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, d.opts.RequestTimeout)
	defer cancel()
	resp, err := d.opts.Client.Get(lctx, d.scopePrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", d.scopePrefix, err)
	}
	before := d.known
	d.known = make(map[string]map[string]routing.Endpoint)
	for _, kv := range resp.Kvs {
		d.put(kv)
	}
	for service := range mapsUnion(before, d.known) {
		d.publish(service)
	}
	d.revision.Store(resp.Header.Revision)
	d.synced.Store(true)
	d.lastErr.Store(nil)
	d.opts.Logger.Debug("registry: listed", "prefix", d.scopePrefix, "entries", len(resp.Kvs), "revision", resp.Header.Revision)
	return resp.Header.Revision, nil
}

// apply records one watch event and returns the service it touched.
func (d *Discovery) apply(ev *clientv3.Event) (service string, ok bool) {
	if ev.Type == mvccpb.PUT {
		return d.put(ev.Kv)
	}
	service, _, err := parseKey(d.scopePrefix, string(ev.Kv.Key))
	if err != nil {
		return "", false
	}
	delete(d.known[service], string(ev.Kv.Key))
	return service, true
}

// put records one key; a malformed one is skipped with a log line naming
// it, and replaces what the key held before.
func (d *Discovery) put(kv *mvccpb.KeyValue) (service string, ok bool) {
	key := string(kv.Key)
	service, id, err := parseKey(d.scopePrefix, key)
	if err == nil {
		err = routing.ValidateServiceName(service)
	}
	if err != nil {
		d.skip(key, err)
		return "", false
	}
	ep, err := decodeValue(kv.Value)
	if err == nil {
		err = d.allowed(ep.Addr)
	}
	if err != nil {
		d.skip(key, err)
		if eps, ok := d.known[service]; ok {
			delete(eps, key)
		}
		return service, true
	}
	ep.ID = id
	if d.known[service] == nil {
		d.known[service] = make(map[string]routing.Endpoint)
	}
	d.known[service][key] = ep
	return service, true
}

// allowed refuses an address outside AllowedNetworks.
func (d *Discovery) allowed(addr string) error {
	if len(d.opts.AllowedNetworks) == 0 {
		return nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("value has Addr %q, not an IP address, and registry.allowed_networks is set", addr)
	}
	for _, p := range d.opts.AllowedNetworks {
		if p.Contains(ap.Addr().Unmap()) {
			return nil
		}
	}
	return fmt.Errorf("value has Addr %q, outside registry.allowed_networks", addr)
}

func (d *Discovery) skip(key string, err error) {
	d.skipped.Add(1)
	d.opts.Logger.Warn("registry: skipping a bad entry", "key", key, "error", err)
}

// publish puts the service's etcd endpoints in the table.
func (d *Discovery) publish(service string) {
	eps := d.known[service]
	if len(eps) == 0 {
		delete(d.known, service)
		d.opts.Table.Remove(service, SourceEtcd)
		return
	}
	// The table orders endpoints itself.
	list := slices.Collect(maps.Values(eps))
	d.opts.Table.Update(service, SourceEtcd, list)
}

func mapsUnion[V any](a, b map[string]V) map[string]bool {
	out := make(map[string]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
