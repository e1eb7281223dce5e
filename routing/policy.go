package routing

import (
	"fmt"
	"slices"
	"strings"
)

// Policy names, as written in the configuration (proxy.policy and
// services[].policy).
const (
	// PolicyRoundRobin sends each call to the next ready endpoint in turn.
	PolicyRoundRobin = "round-robin"
	// PolicyPickFirst sends every call to the first endpoint that connects,
	// and moves on only when it fails: an ordered failover.
	PolicyPickFirst = "pick-first"
)

// DefaultPolicy is the policy of services that name none.
const DefaultPolicy = PolicyRoundRobin

// balancerConfigs maps each policy to the gRPC load-balancing config that
// implements it.
var balancerConfigs = map[string]string{
	PolicyRoundRobin: `{"round_robin":{}}`,
	PolicyPickFirst:  `{"pick_first":{}}`,
}

// Policies returns the names of the balancing policies, sorted.
func Policies() []string {
	names := make([]string, 0, len(balancerConfigs))
	for name := range balancerConfigs {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// ValidatePolicy returns an error naming the known policies when name is not
// one of them.
func ValidatePolicy(name string) error {
	if _, ok := balancerConfigs[name]; !ok {
		return fmt.Errorf("unknown policy %q (known: %s)", name, strings.Join(Policies(), ", "))
	}
	return nil
}

// serviceConfigJSON returns the gRPC service config selecting policy.
func serviceConfigJSON(policy string) (string, error) {
	lb, ok := balancerConfigs[policy]
	if !ok {
		return "", ValidatePolicy(policy)
	}
	return `{"loadBalancingConfig":[` + lb + `]}`, nil
}
