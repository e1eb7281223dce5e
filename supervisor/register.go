package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/quaestor-go/quaestor/routing/registry"
)

// Registry is what the supervisor needs to register instances.
// *registry.Registrar satisfies it.
type Registry interface {
	// Register adds or replaces inst.
	Register(ctx context.Context, inst registry.Instance) error
	// Deregister removes the instance id of service.
	Deregister(ctx context.Context, service, id string) error
}

// MetaHost is the metadata key of the host name of the supervisor that
// registered an instance.
const MetaHost = "host"

// deregisterTimeout bounds the deregistration of an instance (all its
// service names).
const deregisterTimeout = 5 * time.Second

// registration is one instance's entries in the registry, one per service
// name, all with the ID {agent}-{instance}. Only the instance's goroutine
// uses it.
type registration struct {
	registry Registry // nil: nothing is registered
	services []string
	id       string
	addr     string
	metadata map[string]string
	// claimed is set once Register was called: even a Register that
	// failed may have been kept (the Registrar writes it when etcd is
	// back), so Deregister is due.
	claimed bool
	// registered is set once every Register succeeded.
	registered bool
}

// register registers every service name, unless done already, within
// timeout: the heartbeat waits meanwhile.
func (r *registration) register(ctx context.Context, timeout time.Duration) error {
	if r.registry == nil || r.registered || len(r.services) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r.claimed = true
	var errs []error
	for _, service := range r.services {
		inst := registry.Instance{Service: service, ID: r.id, Addr: r.addr, Metadata: r.metadata}
		errs = append(errs, r.registry.Register(ctx, inst))
	}
	err := errors.Join(errs...)
	r.registered = err == nil
	return err
}

// deregister removes every service name, if any was registered. It runs
// even when ctx is done (the instance is stopping): only its values are
// kept.
func (r *registration) deregister(ctx context.Context) error {
	if !r.claimed {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deregisterTimeout)
	defer cancel()
	var errs []error
	for _, service := range r.services {
		errs = append(errs, r.registry.Deregister(ctx, service, r.id))
	}
	r.registered = false
	err := errors.Join(errs...)
	// On failure the next deregistration tries again.
	r.claimed = err != nil
	return err
}

var _ Registry = (*registry.Registrar)(nil)
