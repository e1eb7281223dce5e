package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"

	"github.com/quaestor-go/quaestor/routing"
)

// Instance is one registered instance of a service.
type Instance struct {
	// Service is the full gRPC service name. Required.
	Service string
	// ID identifies the instance within the service. Default: Addr.
	ID string
	// Addr is where the instance serves, host:port. Required.
	Addr string
	// Metadata is stored with the address (MetaTLS, MetaWeight, MetaAgent,
	// MetaZone, ...).
	Metadata map[string]string
}

// RegistrarOptions configure a Registrar.
type RegistrarOptions struct {
	// Client is the etcd client. Required; the Registrar does not close it.
	Client *clientv3.Client
	// Prefix and Scope place the keys. Defaults DefaultPrefix and
	// DefaultScope.
	Prefix string
	Scope  string
	// TTL of the lease. Default DefaultLeaseTTL; at least MinLeaseTTL.
	TTL time.Duration
	// RequestTimeout bounds each etcd request. Default 5s.
	RequestTimeout time.Duration
	// Logger receives lease losses and re-registrations. Default
	// slog.Default().
	Logger *slog.Logger
}

// Registrar keeps instances registered in etcd under one lease for the
// whole process. The lease is kept alive at a third of its TTL (by the etcd
// client). When etcd does not answer within the TTL (restarted, without
// quorum, cut off), the registrar waits until it does: if etcd still holds
// the lease it is kept; if it expired (its instances deleted), a new one is
// granted and every instance is written again. Close revokes the lease,
// which removes every instance at once; a process that dies without Close
// is removed when its lease expires.
type Registrar struct {
	opts RegistrarOptions

	mu        sync.Mutex
	instances map[string]Instance // by key
	// unwritten holds the keys of instances whose write failed; the
	// keeper retries them under the current lease.
	unwritten map[string]bool
	lease     clientv3.LeaseID // 0 while there is none
	// leaseChanged is closed and replaced whenever lease changes.
	leaseChanged chan struct{}

	// writeMu orders the etcd writes of instances, so that a re-put of
	// all instances cannot bring back one deregistered meanwhile.
	writeMu sync.Mutex

	leasesLost atomic.Int64
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// NewRegistrar starts keeping a lease. Instances are added with Register.
func NewRegistrar(opts RegistrarOptions) (*Registrar, error) {
	if opts.Client == nil {
		return nil, errors.New("registry: NewRegistrar: Options.Client is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Scope == "" {
		opts.Scope = DefaultScope
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultLeaseTTL
	}
	if opts.TTL < MinLeaseTTL {
		return nil, fmt.Errorf("registry: lease TTL %s is below etcd's minimum of %s", opts.TTL, MinLeaseTTL)
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Registrar{
		opts:         opts,
		instances:    make(map[string]Instance),
		unwritten:    make(map[string]bool),
		leaseChanged: make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.keepLease()
	}()
	return r, nil
}

// Register adds inst and returns once it is written in etcd. If ctx ends
// first (etcd unreachable), it returns the reason and keeps inst all the
// same: it is written as soon as etcd can be reached. Registering the same
// service and ID again replaces the address and metadata.
func (r *Registrar) Register(ctx context.Context, inst Instance) error {
	if inst.ID == "" {
		inst.ID = inst.Addr
	}
	if err := validateInstance(inst); err != nil {
		return err
	}
	key := InstanceKey(r.opts.Prefix, r.opts.Scope, inst.Service, inst.ID)
	if _, err := encodeValue(inst.Addr, inst.Metadata); err != nil {
		return fmt.Errorf("registry: registering %s: %w", key, err)
	}
	r.mu.Lock()
	r.instances[key] = inst
	r.unwritten[key] = true
	r.mu.Unlock()

	var lastErr error
	for {
		lease, changed := r.currentLease()
		if lease != 0 {
			if lastErr = r.putIfRegistered(ctx, key, lease); lastErr == nil {
				return nil
			}
		}
		// Wait for a new lease, or retry shortly: the lease may be fine
		// and etcd briefly unreachable.
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = errors.New("no lease granted yet")
			}
			return fmt.Errorf("registry: registering %s: %w (kept; written when etcd is reachable): %w", key, ctx.Err(), lastErr)
		case <-changed:
		case <-time.After(minBackoff):
		}
	}
}

func validateInstance(inst Instance) error {
	if err := routing.ValidateServiceName(inst.Service); err != nil {
		return fmt.Errorf("registry: instance service: %w", err)
	}
	if err := routing.ValidateAddr(inst.Addr); err != nil {
		return fmt.Errorf("registry: instance of %s: address %w", inst.Service, err)
	}
	if err := routing.ValidateServiceName(inst.ID); err != nil {
		return fmt.Errorf("registry: instance of %s: id %q must be non-empty without '/' or white space", inst.Service, inst.ID)
	}
	return nil
}

// Deregister removes an instance from etcd at once.
func (r *Registrar) Deregister(ctx context.Context, service, id string) error {
	key := InstanceKey(r.opts.Prefix, r.opts.Scope, service, id)
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	delete(r.instances, key)
	delete(r.unwritten, key)
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, r.opts.RequestTimeout)
	defer cancel()
	if _, err := r.opts.Client.Delete(ctx, key); err != nil {
		return fmt.Errorf("registry: deregistering %s: %w", key, err)
	}
	return nil
}

// Instances returns the instances kept registered, sorted by key.
func (r *Registrar) Instances() []Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Instance, 0, len(r.instances))
	for _, key := range slices.Sorted(maps.Keys(r.instances)) {
		out = append(out, r.instances[key])
	}
	return out
}

// LeasesLost counts the leases lost and re-granted since the start.
func (r *Registrar) LeasesLost() int64 { return r.leasesLost.Load() }

// Lease returns the lease in use, or 0 while there is none.
func (r *Registrar) Lease() clientv3.LeaseID {
	lease, _ := r.currentLease()
	return lease
}

// Close stops keeping the lease and revokes it, removing every instance
// from etcd at once.
func (r *Registrar) Close() error {
	r.cancel()
	r.wg.Wait()
	lease, _ := r.currentLease()
	if lease == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.RequestTimeout)
	defer cancel()
	if _, err := r.opts.Client.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("registry: revoking lease %x: %w (the instances expire within %s)", int64(lease), err, r.opts.TTL)
	}
	r.setLease(0)
	return nil
}

func (r *Registrar) currentLease() (clientv3.LeaseID, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease, r.leaseChanged
}

func (r *Registrar) setLease(lease clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lease = lease
	close(r.leaseChanged)
	r.leaseChanged = make(chan struct{})
}

// keepLease grants a lease, writes every instance under it, keeps it
// alive, and starts over when it is lost.
func (r *Registrar) keepLease() {
	retry := newBackoff()
	for r.ctx.Err() == nil {
		lease, alive, err := r.grant()
		if err != nil {
			r.opts.Logger.Warn("registry: cannot grant a lease; retrying", "error", err)
			if !r.waitRetry(retry) {
				return
			}
			continue
		}
		if err := r.putAll(lease); err != nil {
			r.opts.Logger.Warn("registry: cannot write the instances; retrying with a new lease", "lease", fmt.Sprintf("%x", int64(lease)), "error", err)
			r.revokeQuietly(lease)
			if !r.waitRetry(retry) {
				return
			}
			continue
		}
		r.setLease(lease)
		retry.reset()
		for alive != nil {
			r.keepAlive(lease, alive)
			if r.ctx.Err() != nil {
				return
			}
			// No answer to the keep-alives within the TTL: etcd was away.
			// It may still hold the lease (a new leader or a restarted
			// member extends every lease by its TTL); then nothing was
			// deleted and the lease is kept.
			r.setLease(0)
			if alive = r.revive(lease); alive != nil {
				r.setLease(lease)
				r.opts.Logger.Info("registry: etcd reachable again; lease kept", "lease", fmt.Sprintf("%x", int64(lease)))
			}
		}
		if r.ctx.Err() != nil {
			return
		}
		r.leasesLost.Add(1)
		r.opts.Logger.Warn("registry: lease lost; granting a new one and registering again",
			"lease", fmt.Sprintf("%x", int64(lease)), "instances", len(r.Instances()))
		if !r.waitRetry(retry) {
			return
		}
	}
}

// revive waits until etcd answers whether it still holds lease, and keeps
// the lease alive again if it does. It returns nil when the lease is gone
// (expired in etcd: its instances were deleted) or the registrar stops.
func (r *Registrar) revive(lease clientv3.LeaseID) <-chan *clientv3.LeaseKeepAliveResponse {
	retry := newBackoff()
	for {
		ctx, cancel := context.WithTimeout(r.ctx, r.opts.RequestTimeout)
		resp, err := r.opts.Client.KeepAliveOnce(ctx, lease)
		cancel()
		switch {
		case r.ctx.Err() != nil:
			return nil
		case err == nil && resp.TTL > 0:
			alive, err := r.opts.Client.KeepAlive(r.ctx, lease)
			if err != nil {
				return nil
			}
			return alive
		case err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound):
			return nil
		}
		if !r.waitRetry(retry) {
			return nil
		}
	}
}

// waitRetry waits for the next step of retry, or less: until the client's
// connection to etcd is up again after being down. etcd deletes the
// instances of a lease that expired during an outage; every proxy then
// drops them until they are written again, so that is done as soon as etcd
// can be reached, not after a backoff grown during the outage. It reports
// whether to go on.
func (r *Registrar) waitRetry(retry *backoff) bool {
	ctx, cancel := context.WithTimeout(r.ctx, retry.next())
	defer cancel()
	conn := r.opts.Client.ActiveConnection()
	state := conn.GetState()
	for conn.WaitForStateChange(ctx, state) {
		state = conn.GetState()
		if state == connectivity.Ready {
			break
		}
	}
	return r.ctx.Err() == nil
}

func (r *Registrar) grant() (clientv3.LeaseID, <-chan *clientv3.LeaseKeepAliveResponse, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.RequestTimeout)
	defer cancel()
	ttl := int64(math.Ceil(r.opts.TTL.Seconds()))
	resp, err := r.opts.Client.Grant(ctx, ttl)
	if err != nil {
		return 0, nil, fmt.Errorf("granting a %ds lease: %w", ttl, err)
	}
	// The keep-alive lives as long as the registrar: its channel closes
	// when the lease is lost or the registrar stops.
	alive, err := r.opts.Client.KeepAlive(r.ctx, resp.ID)
	if err != nil {
		r.revokeQuietly(resp.ID)
		return 0, nil, fmt.Errorf("keeping lease %x alive: %w", int64(resp.ID), err)
	}
	return resp.ID, alive, nil
}

// unwrittenRetry is how often instances whose write failed are written
// again while the lease holds.
const unwrittenRetry = time.Second

// keepAlive drains the lease's keep-alive responses until the lease is lost
// or the registrar stops, writing meanwhile the instances whose first write
// failed (etcd was away, and the lease outlived the outage).
func (r *Registrar) keepAlive(lease clientv3.LeaseID, alive <-chan *clientv3.LeaseKeepAliveResponse) {
	tick := time.NewTicker(unwrittenRetry)
	defer tick.Stop()
	for {
		select {
		case _, ok := <-alive:
			if !ok {
				return
			}
		case <-tick.C:
			if err := r.putUnwritten(lease); err != nil {
				r.opts.Logger.Debug("registry: writing instances again failed; retrying", "error", err)
			}
		}
	}
}

// putUnwritten writes the instances whose last write failed.
func (r *Registrar) putUnwritten(lease clientv3.LeaseID) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	pending := make(map[string]Instance, len(r.unwritten))
	for key := range r.unwritten {
		pending[key] = r.instances[key]
	}
	r.mu.Unlock()
	for key, inst := range pending {
		if err := r.put(r.ctx, key, inst, lease); err != nil {
			return err
		}
	}
	return nil
}

// put writes one instance under lease and marks it written.
func (r *Registrar) put(ctx context.Context, key string, inst Instance, lease clientv3.LeaseID) error {
	value, err := encodeValue(inst.Addr, inst.Metadata)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.RequestTimeout)
	defer cancel()
	if _, err := r.opts.Client.Put(ctx, key, value, clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("writing %s: %w", key, err)
	}
	r.mu.Lock()
	delete(r.unwritten, key)
	r.mu.Unlock()
	return nil
}

// putAll writes every instance under lease.
func (r *Registrar) putAll(lease clientv3.LeaseID) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	instances := maps.Clone(r.instances)
	r.mu.Unlock()
	for key, inst := range instances {
		if err := r.put(r.ctx, key, inst, lease); err != nil {
			return err
		}
	}
	return nil
}

// putIfRegistered writes key unless it was deregistered meanwhile.
func (r *Registrar) putIfRegistered(ctx context.Context, key string, lease clientv3.LeaseID) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	inst, registered := r.instances[key]
	r.mu.Unlock()
	if !registered {
		return nil
	}
	return r.put(ctx, key, inst, lease)
}

func (r *Registrar) revokeQuietly(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), r.opts.RequestTimeout)
	defer cancel()
	_, _ = r.opts.Client.Revoke(ctx, lease)
}
