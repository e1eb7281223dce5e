package routing

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Retries. Every proxied call is a stream of raw frames on a service
// connection; gRPC retries it, on another pick, in two cases:
//
//   - transparently, for every method: when the call never reached a
//     backend (its connection failed before the request went out, or the
//     backend refused the stream or said, in a GOAWAY, that it did not
//     process it). Nothing to configure: it is safe for any call.
//   - by policy, for the methods listed in RetryConfig.IdempotentMethods:
//     when an attempt fails with UNAVAILABLE before the backend sent
//     response headers (the backend died, hung up or was cut off with the
//     request on it), up to MaxAttempts, within a budget shared by the
//     service's calls, so that retries cannot multiply the load of a
//     service that is failing as a whole.
//
// gRPC keeps the request messages of a call until its response headers
// commit it, up to 256 KiB: a call that has sent more is not retried once
// its messages are out. A method not listed is never retried once its
// request may have reached a backend: a call placed on a connection that
// the backend closed abruptly, before gRPC read the close, fails with
// UNAVAILABLE, since the request may have been read.

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
