// Package tracing sets up OpenTelemetry tracing for quaestor: spans are
// exported over OTLP/gRPC to the collector the `tracing:` section names;
// without one, tracing is off and costs nothing.
package tracing

import (
	"context"
	"fmt"
	"net"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Config is the `tracing:` section.
type Config struct {
	// OTLPEndpoint is the host:port of an OTLP/gRPC collector. Default
	// empty: tracing off.
	OTLPEndpoint string `koanf:"otlp_endpoint"`
	// Insecure sends spans in plaintext (a collector on the same machine
	// or network). Default false.
	Insecure bool `koanf:"insecure"`
	// SampleRatio is the share of traces started here that are sampled,
	// 0 to 1; traces a client started follow the client's decision.
	// Default 1.
	SampleRatio float64 `koanf:"sample_ratio"`
	// ServiceName names quaestor in the traces. Default "quaestor".
	ServiceName string `koanf:"service_name"`
}

// DefaultConfig returns the defaults: tracing off.
func DefaultConfig() Config {
	return Config{SampleRatio: 1, ServiceName: "quaestor"}
}

// Validate returns an error naming the key with a bad value.
func (c Config) Validate() error {
	if c.OTLPEndpoint != "" {
		if _, _, err := net.SplitHostPort(c.OTLPEndpoint); err != nil {
			return fmt.Errorf("tracing.otlp_endpoint: %q is not host:port", c.OTLPEndpoint)
		}
	}
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		return fmt.Errorf("tracing.sample_ratio: %v, want 0 to 1", c.SampleRatio)
	}
	if c.ServiceName == "" {
		return fmt.Errorf("tracing.service_name: empty")
	}
	return nil
}

// Setup starts exporting spans as cfg says. It returns nil and a no-op
// shutdown when tracing is off; otherwise shutdown flushes the spans left.
func Setup(ctx context.Context, cfg Config) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.OTLPEndpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.OTLPEndpoint)}
	if cfg.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exporter, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing.otlp_endpoint %s: %w", cfg.OTLPEndpoint, err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName))),
	)
	return tp, tp.Shutdown, nil
}
