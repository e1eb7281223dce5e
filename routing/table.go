package routing

import (
	"cmp"
	"log/slog"
	"maps"
	"slices"
	"sync"
)

// SourceStatic is the source name of endpoints listed in the configuration.
const SourceStatic = "static"

// Endpoint is one instance of a service that calls can be sent to.
type Endpoint struct {
	// Addr is the instance's host:port.
	Addr string
	// Source names what put the endpoint in the table: SourceStatic, or a
	// registry.
	Source string
	// ID identifies the instance within its source: the registry key, or the
	// address for static endpoints.
	ID string
	// Metadata is what the instance registered about itself (tls, weight,
	// zone, ...). Read only.
	Metadata map[string]string
	// State is the endpoint's live health and load, shared by every
	// source listing the same address. Set by the table.
	State *EndpointState
}

// Table records the endpoints of every service, merged from all sources.
// It is safe for concurrent use. Readers that must follow changes subscribe
// with [Table.Subscribe].
type Table struct {
	mu sync.Mutex
	// services maps service → source → endpoints. A service is known while
	// at least one source lists it, even with no endpoints.
	services map[string]map[string][]Endpoint
	// states holds the live state per service and address, kept while any
	// source lists the address.
	states map[string]map[string]*EndpointState
	subs   map[string]map[*subscription]struct{}
	// members are notified when the endpoint list of any service changes
	// (not its endpoints' health or load).
	members map[*subscription]struct{}

	passive PassiveHealth
	logger  *slog.Logger
	// merged caches each service's endpoints as Endpoints returns them,
	// until its list changes: pickers rebuild from them on every change
	// of health or load, and with 1,000 endpoints merging and sorting
	// them took most of a rebuild.
	merged map[string][]Endpoint
	// ranked caches each service's ranking (see Ranked).
	ranked map[string]*rankedCache
}

type subscription struct {
	notify chan struct{}
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{
		services: make(map[string]map[string][]Endpoint),
		states:   make(map[string]map[string]*EndpointState),
		subs:     make(map[string]map[*subscription]struct{}),
		members:  make(map[*subscription]struct{}),
		passive:  DefaultPassiveHealth(),
		merged:   make(map[string][]Endpoint),
		ranked:   make(map[string]*rankedCache),
	}
}

// Update replaces the endpoints that source contributes to service. An empty
// eps keeps the service known to that source with no endpoints; use
// [Table.Remove] to forget it.
func (t *Table) Update(service, source string, eps []Endpoint) {
	eps = slices.Clone(eps)
	for i := range eps {
		eps[i].Source = source
		if eps[i].ID == "" {
			eps[i].ID = eps[i].Addr
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	bySource := t.services[service]
	if bySource == nil {
		bySource = make(map[string][]Endpoint)
		t.services[service] = bySource
	}
	bySource[source] = eps
	t.syncStatesLocked(service)
	t.notifyLocked(service)
	t.notifyMembersLocked()
}

// syncStatesLocked gives every listed address of service a state and drops
// the states of addresses no source lists any more; the endpoints merged
// before are dropped too.
func (t *Table) syncStatesLocked(service string) {
	delete(t.merged, service)
	listed := make(map[string]bool)
	for _, eps := range t.services[service] {
		for _, ep := range eps {
			listed[ep.Addr] = true
		}
	}
	states := t.states[service]
	if states == nil {
		states = make(map[string]*EndpointState)
		t.states[service] = states
	}
	for addr := range listed {
		if states[addr] == nil {
			states[addr] = newEndpointState(service, addr)
			states[addr].table = t
		}
	}
	for addr := range states {
		if !listed[addr] {
			delete(states, addr)
		}
	}
	if len(states) == 0 {
		delete(t.states, service)
	}
}

// Remove forgets what source contributed to service.
func (t *Table) Remove(service, source string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	bySource, ok := t.services[service]
	if !ok {
		return
	}
	if _, ok := bySource[source]; !ok {
		return
	}
	delete(bySource, source)
	if len(bySource) == 0 {
		delete(t.services, service)
	}
	t.syncStatesLocked(service)
	t.notifyLocked(service)
	t.notifyMembersLocked()
}

// Endpoints returns the endpoints of service from every source, sorted by
// address, one per address (a static entry wins over a registered one for
// the same address), in a slice that is the caller's. ok is false when no
// source knows the service.
func (t *Table) Endpoints(service string) (eps []Endpoint, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	bySource, ok := t.services[service]
	if !ok {
		return nil, false
	}
	if merged, ok := t.merged[service]; ok {
		return slices.Clone(merged), true
	}
	for _, source := range bySource {
		eps = append(eps, source...)
	}
	for i := range eps {
		eps[i].State = t.states[service][eps[i].Addr]
	}
	slices.SortFunc(eps, compareEndpoints)
	eps = slices.CompactFunc(eps, func(a, b Endpoint) bool { return a.Addr == b.Addr })
	t.merged[service] = eps
	return slices.Clone(eps), true
}

// compareEndpoints orders by address, then static first, then by source
// and ID, so that the one kept per address is always the same. The later
// keys are compared only on ties (cmp.Or would evaluate them all).
func compareEndpoints(a, b Endpoint) int {
	if c := cmp.Compare(a.Addr, b.Addr); c != 0 {
		return c
	}
	if c := sourceRank(a.Source) - sourceRank(b.Source); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

func sourceRank(source string) int {
	if source == SourceStatic {
		return 0
	}
	return 1
}

// Has reports whether any source knows service.
func (t *Table) Has(service string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.services[service]
	return ok
}

// Services returns the names of all known services, sorted.
func (t *Table) Services() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Sorted(maps.Keys(t.services))
}

// Subscribe returns a channel that receives a value after every change to
// service's endpoints, and at once so that the subscriber reads the current
// state. Changes made while the subscriber is busy are coalesced into one
// value. cancel ends the subscription; the channel is not closed.
func (t *Table) Subscribe(service string) (changed <-chan struct{}, cancel func()) {
	sub := &subscription{notify: make(chan struct{}, 1)}
	sub.notify <- struct{}{}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.subs[service] == nil {
		t.subs[service] = make(map[*subscription]struct{})
	}
	t.subs[service][sub] = struct{}{}
	return sub.notify, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.subs[service], sub)
		if len(t.subs[service]) == 0 {
			delete(t.subs, service)
		}
	}
}

// SubscribeMembers is Subscribe for a change to the endpoint list of any
// service: an endpoint or service added or removed. Changes of health and
// load, many a second with many endpoints, do not notify it.
func (t *Table) SubscribeMembers() (changed <-chan struct{}, cancel func()) {
	sub := &subscription{notify: make(chan struct{}, 1)}
	sub.notify <- struct{}{}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.members[sub] = struct{}{}
	return sub.notify, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.members, sub)
	}
}

// Changed tells the subscribers of service that its endpoints' health or
// load changed, so that balancers rank them again.
func (t *Table) Changed(service string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.notifyLocked(service)
}

// notifyMembersLocked notifies the members' subscribers: an endpoint list
// changed.
func (t *Table) notifyMembersLocked() {
	for sub := range t.members {
		select {
		case sub.notify <- struct{}{}:
		default: // a notification is already pending
		}
	}
}

func (t *Table) notifyLocked(service string) {
	delete(t.ranked, service)
	for sub := range t.subs[service] {
		select {
		case sub.notify <- struct{}{}:
		default: // a notification is already pending
		}
	}
}
