package routing

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/balancer"
)

// Candidate is a ready endpoint, as a policy sees it.
type Candidate struct {
	Endpoint
	// SubConn carries the call; policies only return it.
	SubConn balancer.SubConn
}

// A Policy decides, call by call, which ready endpoint of a service gets
// the call. NewSelector is called whenever the ready set changes, and for
// the load-aware policies also when the loads change, with the ready
// candidates sorted by address in a slice the selector may keep; the
// Selector it returns is used for every call until the next change,
// concurrently, and must take no lock.
type Policy interface {
	NewSelector(candidates []Candidate) Selector
}

// A Selector picks the candidate for one call. candidates is never empty.
type Selector interface {
	Select(info balancer.PickInfo) *Candidate
}

// PolicyConfig is what a policy may be configured with.
type PolicyConfig struct {
	// HashKey is the request metadata key whose value consistent-hash
	// hashes (e.g. "x-session-id"). Calls without it are spread evenly.
	HashKey string
	// LoadMaxAge is how old a load report may be and still count.
	LoadMaxAge time.Duration
}

// Policy names, as written in the configuration (proxy.policy and
// services[].policy).
const (
	// PolicyLeastLoaded sends each call to the least loaded endpoint:
	// lowest known load rate, then lowest host load, then fewest calls in
	// flight for its capacity, round robin among equals.
	PolicyLeastLoaded = "least-loaded"
	// PolicyRoundRobin sends each call to the next ready endpoint in turn.
	PolicyRoundRobin = "round-robin"
	// PolicyWeightedRoundRobin sends calls in proportion to the endpoints'
	// weights: the "weight" metadata, or weights derived from ORCA
	// reports (qps / utilization, as gRFC A58).
	PolicyWeightedRoundRobin = "weighted-round-robin"
	// PolicyLeastRequest compares two random endpoints and picks the one
	// with fewer calls in flight (power of two choices).
	PolicyLeastRequest = "least-request"
	// PolicyPeakEWMA compares two random endpoints by moving-average
	// latency times calls in flight, as linkerd does.
	PolicyPeakEWMA = "peak-ewma"
	// PolicyConsistentHash keeps calls with the same value of the hash key
	// metadata on the same endpoint while the set is stable (session
	// affinity).
	PolicyConsistentHash = "consistent-hash"
	// PolicyFailover sends every call to the first available endpoint in
	// priority order (metadata "priority", lower first; static endpoints
	// in the order listed) and to the next only when it is gone.
	PolicyFailover = "failover"
)

// DefaultPolicy is the policy of services that name none.
const DefaultPolicy = PolicyLeastLoaded

// newPolicies maps each policy name to its constructor.
var newPolicies = map[string]func(PolicyConfig) Policy{
	PolicyLeastLoaded:        func(c PolicyConfig) Policy { return leastLoaded{maxAge: c.LoadMaxAge} },
	PolicyRoundRobin:         func(PolicyConfig) Policy { return roundRobin{} },
	PolicyWeightedRoundRobin: func(c PolicyConfig) Policy { return weightedRoundRobin{maxAge: c.LoadMaxAge} },
	PolicyLeastRequest:       func(PolicyConfig) Policy { return leastRequest{} },
	PolicyPeakEWMA:           func(PolicyConfig) Policy { return peakEWMA{} },
	PolicyConsistentHash:     func(c PolicyConfig) Policy { return consistentHash{key: c.HashKey} },
	PolicyFailover:           func(PolicyConfig) Policy { return failover{} },
}

// loadAware lists the policies whose selectors read loads when they are
// built; the others are not rebuilt when only loads change.
var loadAware = map[string]bool{PolicyLeastLoaded: true, PolicyWeightedRoundRobin: true}

// NewPolicy returns the named policy.
func NewPolicy(name string, cfg PolicyConfig) (Policy, error) {
	build, ok := newPolicies[name]
	if !ok {
		return nil, ValidatePolicy(name)
	}
	return build(cfg), nil
}

// Policies returns the names of the balancing policies, sorted.
func Policies() []string {
	names := make([]string, 0, len(newPolicies))
	for name := range newPolicies {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// ValidatePolicy returns an error naming the known policies when name is not
// one of them.
func ValidatePolicy(name string) error {
	if _, ok := newPolicies[name]; !ok {
		return fmt.Errorf("unknown policy %q (known: %s)", name, strings.Join(Policies(), ", "))
	}
	return nil
}
