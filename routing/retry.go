package routing

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"
)

// Retries. The proxy's frame engine places every attempt of a call with
// Router.Pick and retries it, on another pick, in two cases:
//
//   - transparently, for every method: when the attempt never reached a
//     backend (the connection to it could not be made, or the backend
//     refused the stream, or said in a GOAWAY that it did not process
//     it). Nothing to configure: it is safe for any call. These count
//     towards the engine's own cap of 5 attempts, not MaxAttempts.
//   - by policy, for the methods listed in RetryConfig.IdempotentMethods:
//     when an attempt fails with UNAVAILABLE before the backend sent
//     response headers (the backend died, hung up, was cut off or missed
//     its keepalive pings with the request on it), as Router.RetryDelay
//     allows: up to MaxAttempts, with backoff, within a budget shared by
//     the service's calls, so that retries cannot multiply the load of a
//     service that is failing as a whole.
//
// Every attempt ends with Picked.Done, so passive health and the budget
// see each one, retried or not. The engine keeps the request of a call
// for replay until response headers commit it, up to 256 KiB: a call that
// has sent more is not retried once its messages are out. A method not
// listed is never retried once its request may have reached a backend: a
// call opened on a connection that the backend closed abruptly, before
// the proxy read the close, fails with UNAVAILABLE, since the request may
// have been read.
//
// The same configuration, turned into a gRPC service config
// (retryServiceConfig), governs the calls on the connections Router.Conn
// hands out, which gRPC retries itself; the proxy uses those only for
// server reflection.

// RetryConfig is the `retry:` section.
type RetryConfig struct {
	// IdempotentMethods lists the methods that may be sent again after a
	// backend may have seen them: "pkg.Svc/Method", or "pkg.Svc/*" for all
	// the methods of a service. Default: none.
	IdempotentMethods []string `koanf:"idempotent_methods"`
	// MaxAttempts bounds the attempts of one call, the first included,
	// from 1 (no retry by policy) to 5. Default 3.
	MaxAttempts int `koanf:"max_attempts"`
	// InitialBackoff is the wait before the first retry; each further
	// retry waits up to twice as long as the previous one (randomised by
	// ±20 %), at most MaxBackoff. Defaults 10ms and 200ms.
	InitialBackoff time.Duration `koanf:"initial_backoff"`
	MaxBackoff     time.Duration `koanf:"max_backoff"`
	// Budget throttles the retries of each service.
	Budget RetryBudget `koanf:"budget"`
}

// RetryBudget is gRPC's retry throttling (gRFC A6), per service: a bucket
// of MaxTokens tokens, full at first; every attempt that fails with a
// retryable status takes one, every call that succeeds gives TokenRatio
// back, and retries stop while the bucket is at most half full.
type RetryBudget struct {
	// MaxTokens is the bucket's size, more than 0 and at most 1000; about
	// half of it is the burst of retries allowed. Default 100.
	MaxTokens float64 `koanf:"max_tokens"`
	// TokenRatio is what a successful call gives back, more than 0. The
	// default 0.1 allows, past the burst, one retry per ten successful
	// calls.
	TokenRatio float64 `koanf:"token_ratio"`
}

// DefaultRetryConfig returns the retry section's defaults.
func DefaultRetryConfig() RetryConfig {
	return RetryConfig{
		MaxAttempts:    3,
		InitialBackoff: 10 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		Budget:         RetryBudget{MaxTokens: 100, TokenRatio: 0.1},
	}
}

// withDefaults fills the fields left zero with DefaultRetryConfig's.
func (c RetryConfig) withDefaults() RetryConfig {
	d := DefaultRetryConfig()
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = d.InitialBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(d.MaxBackoff, c.InitialBackoff)
	}
	if c.Budget.MaxTokens == 0 {
		c.Budget.MaxTokens = d.Budget.MaxTokens
	}
	if c.Budget.TokenRatio == 0 {
		c.Budget.TokenRatio = d.Budget.TokenRatio
	}
	return c
}

// maxRetryAttempts is gRPC's own cap on attempts (grpc.WithMaxCallAttempts'
// default): a larger max_attempts would be silently lowered.
const maxRetryAttempts = 5

// Validate returns an error naming the first key with a bad value.
func (c RetryConfig) Validate() error {
	for i, m := range c.IdempotentMethods {
		if _, _, err := parseMethodPattern(m); err != nil {
			return fmt.Errorf("retry.idempotent_methods[%d]: %w", i, err)
		}
	}
	switch {
	case c.MaxAttempts < 1 || c.MaxAttempts > maxRetryAttempts:
		return fmt.Errorf("retry.max_attempts: %d, want 1 to %d", c.MaxAttempts, maxRetryAttempts)
	case c.InitialBackoff <= 0:
		return fmt.Errorf("retry.initial_backoff: %s, want more than 0", c.InitialBackoff)
	case c.MaxBackoff < c.InitialBackoff:
		return fmt.Errorf("retry.max_backoff: %s is less than retry.initial_backoff %s", c.MaxBackoff, c.InitialBackoff)
	case c.Budget.MaxTokens <= 0 || c.Budget.MaxTokens > 1000:
		return fmt.Errorf("retry.budget.max_tokens: %g, want more than 0 and at most 1000", c.Budget.MaxTokens)
	case c.Budget.TokenRatio <= 0:
		return fmt.Errorf("retry.budget.token_ratio: %g, want more than 0", c.Budget.TokenRatio)
	}
	return nil
}

// parseMethodPattern splits "pkg.Svc/Method" or "pkg.Svc/*"; method is
// empty for the wildcard.
func parseMethodPattern(pattern string) (service, method string, err error) {
	service, method, ok := strings.Cut(pattern, "/")
	if !ok {
		return "", "", fmt.Errorf("%q is not service/method (e.g. \"pkg.Svc/Get\" or \"pkg.Svc/*\")", pattern)
	}
	if err := ValidateServiceName(service); err != nil {
		return "", "", fmt.Errorf("%q: %w", pattern, err)
	}
	switch {
	case method == "*":
		return service, "", nil
	case method == "" || strings.ContainsAny(method, "/* \t\r\n"):
		return "", "", fmt.Errorf("%q: the method %q is empty or holds '/', '*' or white space (\"*\" alone means every method)", pattern, method)
	}
	return service, method, nil
}

// Service config JSON (gRFC A6), the parts retries need.
type (
	jsonMethodName struct {
		Service string `json:"service"`
		Method  string `json:"method,omitempty"`
	}
	jsonRetryPolicy struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	jsonMethodConfig struct {
		Name        []jsonMethodName `json:"name"`
		RetryPolicy *jsonRetryPolicy `json:"retryPolicy"`
	}
	jsonRetryThrottling struct {
		MaxTokens  float64 `json:"maxTokens"`
		TokenRatio float64 `json:"tokenRatio"`
	}
)

// retryServiceConfig returns the service config entries that retry the
// idempotent methods of service: "methodConfig" and "retryThrottling", or
// nothing when none of its methods is listed or MaxAttempts is 1.
func retryServiceConfig(service string, cfg RetryConfig) (map[string]any, error) {
	if cfg.MaxAttempts < 2 {
		return nil, nil
	}
	var names []jsonMethodName
	for _, pattern := range cfg.IdempotentMethods {
		svc, method, err := parseMethodPattern(pattern)
		if err != nil {
			return nil, err
		}
		if svc != service {
			continue
		}
		if method == "" {
			// A service-wide entry covers every method: one name is enough.
			names = []jsonMethodName{{Service: svc}}
			break
		}
		names = append(names, jsonMethodName{Service: svc, Method: method})
	}
	if len(names) == 0 {
		return nil, nil
	}
	return map[string]any{
		"methodConfig": []jsonMethodConfig{{
			Name: names,
			RetryPolicy: &jsonRetryPolicy{
				MaxAttempts:          cfg.MaxAttempts,
				InitialBackoff:       jsonDuration(cfg.InitialBackoff),
				MaxBackoff:           jsonDuration(cfg.MaxBackoff),
				BackoffMultiplier:    2,
				RetryableStatusCodes: []string{"UNAVAILABLE"},
			},
		}},
		"retryThrottling": jsonRetryThrottling{MaxTokens: cfg.Budget.MaxTokens, TokenRatio: cfg.Budget.TokenRatio},
	}, nil
}

// jsonDuration writes d as the service config wants it, in seconds:
// "0.010000000s".
func jsonDuration(d time.Duration) string {
	return fmt.Sprintf("%d.%09ds", d/time.Second, d%time.Second)
}

// withRetries adds the retry entries of service to the service config
// JSON base (an object).
func withRetries(base, service string, cfg RetryConfig) (string, error) {
	extra, err := retryServiceConfig(service, cfg)
	if err != nil || extra == nil {
		return base, err
	}
	var sc map[string]any
	if err := json.Unmarshal([]byte(base), &sc); err != nil {
		return "", fmt.Errorf("routing: service config %s: %w", base, err)
	}
	for key, value := range extra {
		sc[key] = value
	}
	js, err := json.Marshal(sc)
	if err != nil {
		return "", fmt.Errorf("routing: service config of %q: %w", service, err)
	}
	return string(js), nil
}

// Retries decided outside gRPC. A caller that places attempts itself
// (Router.Pick) asks Router.RetryDelay instead of a service config; the
// rules below are the same ones retryServiceConfig hands gRPC, applied
// the way grpc-go applies them (stream.go, shouldRetry).

// retryRules are the retry rules of one service's calls; nil when none of
// its methods may be retried (none listed, or MaxAttempts is 1), as
// retryServiceConfig then gives gRPC none.
type retryRules struct {
	service string
	// allMethods is set by "pkg.Svc/*"; methods holds the listed method
	// names otherwise.
	allMethods bool
	methods    map[string]bool
	cfg        RetryConfig
	budget     *retryBudget
}

// newRetryRules returns the rules of service's calls under cfg (valid), or
// nil when none of them may be retried.
func newRetryRules(service string, cfg RetryConfig) *retryRules {
	if cfg.MaxAttempts < 2 {
		return nil
	}
	rules := &retryRules{service: service, methods: make(map[string]bool), cfg: cfg}
	for _, pattern := range cfg.IdempotentMethods {
		svc, method, err := parseMethodPattern(pattern)
		if err != nil || svc != service {
			continue
		}
		if method == "" {
			rules.allMethods = true
		} else {
			rules.methods[method] = true
		}
	}
	if !rules.allMethods && len(rules.methods) == 0 {
		return nil
	}
	rules.budget = newRetryBudget(cfg.Budget)
	return rules
}

// covers reports whether fullMethod ("/pkg.Svc/Method") is one of the
// idempotent methods. It allocates nothing: it is asked on every pick.
func (r *retryRules) covers(fullMethod string) bool {
	if r == nil {
		return false
	}
	name := strings.TrimPrefix(fullMethod, "/")
	// gRPC splits at the last slash, too (grpcutil.ParseMethod).
	i := strings.LastIndexByte(name, '/')
	if i < 0 || name[:i] != r.service {
		return false
	}
	return r.allMethods || r.methods[name[i+1:]]
}

// backoff is the wait before the retry that follows attempt number
// attempts (1 after the first failed): InitialBackoff·2^(attempts-1), at
// most MaxBackoff, times 0.8 + 0.4·random (random in [0, 1)), the ±20 %
// grpc-go applies.
func (c RetryConfig) backoff(attempts int, random float64) time.Duration {
	d := min(float64(c.InitialBackoff)*math.Pow(2, float64(max(attempts, 1)-1)), float64(c.MaxBackoff))
	return time.Duration(d * (0.8 + 0.4*random))
}

// retryBudget is one service's retry throttling (gRFC A6, RetryBudget):
// grpc-go's retryThrottler, with an atomic bucket instead of a mutex, as
// every successful call of the service gives tokens back.
type retryBudget struct {
	max, threshold, ratio float64
	// tokens holds the float64 bits of the tokens left.
	tokens atomic.Uint64
}

func newRetryBudget(cfg RetryBudget) *retryBudget {
	b := &retryBudget{max: cfg.MaxTokens, threshold: cfg.MaxTokens / 2, ratio: cfg.TokenRatio}
	b.tokens.Store(math.Float64bits(cfg.MaxTokens))
	return b
}

// failed takes a token for an attempt of an idempotent method that failed
// with UNAVAILABLE, down to 0.
func (b *retryBudget) failed() {
	b.add(-1)
}

// succeeded gives TokenRatio back for a call that succeeded, up to the
// bucket's size.
func (b *retryBudget) succeeded() {
	// Load first: the bucket is full while the service is well, and a
	// store on every successful call would bounce its cache line between
	// the CPUs making calls.
	if b.tokensLeft() >= b.max {
		return
	}
	b.add(b.ratio)
}

func (b *retryBudget) add(delta float64) {
	for {
		old := b.tokens.Load()
		next := min(max(math.Float64frombits(old)+delta, 0), b.max)
		if b.tokens.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// allows reports whether retries may be made: while more than half the
// bucket is left.
func (b *retryBudget) allows() bool {
	return b.tokensLeft() > b.threshold
}

// tokensLeft is what the bucket holds now.
func (b *retryBudget) tokensLeft() float64 {
	return math.Float64frombits(b.tokens.Load())
}
