package routing

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/orca" // parses ORCA trailers into DoneInfo.ServerLoad
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"
)

// balancerName is the gRPC load-balancing policy of every service
// connection; its config names the quaestor Policy.
const balancerName = "quaestor"

// init adds the quaestor balancer to gRPC's balancer registry. This is
// the one init registration in quaestor, and not by choice: gRPC keeps
// balancers in a global registry that may only be written during
// initialization (balancer.Register's contract; a later write races with
// every ClientConn reading it). The balancer holds no state of its own:
// each service connection builds its own instance, configured by its
// service config.
func init() {
	balancer.Register(balancerBuilder{})
}

// lbConfig is the balancer's config, from the service config JSON.
type lbConfig struct {
	serviceconfig.LoadBalancingConfig `json:"-"`
	Policy                            string        `json:"policy"`
	HashKey                           string        `json:"hashKey,omitempty"`
	LoadMaxAge                        time.Duration `json:"loadMaxAge,omitempty"`
}

// serviceConfigJSON returns the gRPC service config selecting policy.
func serviceConfigJSON(policy string, cfg PolicyConfig) (string, error) {
	if err := ValidatePolicy(policy); err != nil {
		return "", err
	}
	lb, err := json.Marshal(lbConfig{Policy: policy, HashKey: cfg.HashKey, LoadMaxAge: cfg.LoadMaxAge})
	if err != nil {
		return "", err
	}
	return `{"loadBalancingConfig":[{"` + balancerName + `":` + string(lb) + `}]}`, nil
}

// balancerBuilder builds, per service connection, a base balancer (which
// manages one SubConn per endpoint) whose pickers come from the service's
// Policy.
type balancerBuilder struct{}

var (
	_ balancer.Builder      = balancerBuilder{}
	_ balancer.ConfigParser = balancerBuilder{}
)

func (balancerBuilder) Name() string { return balancerName }

func (balancerBuilder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var cfg lbConfig
	if err := json.Unmarshal(js, &cfg); err != nil {
		return nil, fmt.Errorf("routing: balancer config %s: %w", js, err)
	}
	if err := ValidatePolicy(cfg.Policy); err != nil {
		return nil, fmt.Errorf("routing: balancer config: %w", err)
	}
	return &cfg, nil
}

func (balancerBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	pb := &pickerBuilder{}
	return &policyBalancer{
		Balancer: base.NewBalancerBuilder(balancerName, pb, base.Config{}).Build(cc, opts),
		pickers:  pb,
	}
}

// policyBalancer is a base balancer that takes its policy from its config.
type policyBalancer struct {
	balancer.Balancer
	pickers *pickerBuilder
	config  lbConfig
	// addrs is the address list of the last update handed on.
	addrs string
}

func (b *policyBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	configChanged := false
	if cfg, ok := s.BalancerConfig.(*lbConfig); ok && (b.pickers.policy.Load() == nil || *cfg != b.config) {
		policy, err := NewPolicy(cfg.Policy, PolicyConfig{HashKey: cfg.HashKey, LoadMaxAge: cfg.LoadMaxAge})
		if err != nil {
			return err
		}
		b.config = *cfg
		b.pickers.policy.Store(&policy)
		configChanged = true
	}
	// The base balancer builds a new picker on every update: the resolver
	// pushes one whenever health or load changes, so rankings follow.
	// Policies that do not rank by load skip updates that change nothing
	// but loads.
	var addrs strings.Builder
	for _, a := range s.ResolverState.Addresses {
		addrs.WriteString(a.Addr)
		addrs.WriteByte(',')
	}
	if !configChanged && !loadAware[b.config.Policy] && addrs.String() == b.addrs {
		return nil
	}
	b.addrs = addrs.String()
	return b.Balancer.UpdateClientConnState(s)
}

// pickerBuilder turns the ready SubConns into a picker of the policy.
type pickerBuilder struct {
	policy atomic.Pointer[Policy]
}

func (pb *pickerBuilder) Build(info base.PickerBuildInfo) balancer.Picker {
	if len(info.ReadySCs) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	policy := pb.policy.Load()
	if policy == nil {
		return base.NewErrPicker(status.Error(codes.Internal, "quaestor: no balancing policy configured"))
	}
	candidates := make([]Candidate, 0, len(info.ReadySCs))
	for sc, sci := range info.ReadySCs {
		ep, ok := EndpointOf(sci.Address.BalancerAttributes)
		if !ok || ep.State == nil {
			continue
		}
		candidates = append(candidates, Candidate{Endpoint: ep, SubConn: sc})
	}
	if len(candidates) == 0 {
		return base.NewErrPicker(balancer.ErrNoSubConnAvailable)
	}
	slices.SortFunc(candidates, func(a, b Candidate) int { return compareEndpoints(a.Endpoint, b.Endpoint) })
	return &picker{selector: (*policy).NewSelector(candidates)}
}

// picker places each call with its policy's selector and accounts for it
// on the endpoint's state: calls in flight, duration, ORCA per-call
// reports, and failures for passive health.
type picker struct {
	selector Selector
}

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	c := p.selector.Select(info)
	state := c.State
	state.Started()
	if picked, ok := pickedFrom(info.Ctx); ok {
		picked.state.Store(state)
	}
	start := time.Now()
	return balancer.PickResult{
		SubConn: c.SubConn,
		Done: func(done balancer.DoneInfo) {
			state.Finished(time.Since(start))
			if report, ok := done.ServerLoad.(*v3orcapb.OrcaLoadReport); ok && report != nil {
				state.recordORCA(report, "orca-call")
			}
			// The call's result is recorded by the interceptors (see
			// results.go): DoneInfo.Err is nil for some calls that
			// failed, when the backend answered before reading the request.
		},
	}, nil
}
