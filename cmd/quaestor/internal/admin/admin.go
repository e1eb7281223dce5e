// Package admin serves quaestor's operator endpoints over HTTP: the status
// page at / (plain HTML and a little JavaScript, embedded, refreshing
// itself from /api/status), /api/status (the state of everything, as
// JSON), /healthz (the process is up), /readyz (every readiness check
// passes), /metrics (Prometheus) and, when enabled, /debug/pprof/.
//
//	srv, err := admin.New(admin.Options{Listen: "127.0.0.1:9150", Checks: checks, Gatherer: reg})
//	go srv.Serve()
//	defer srv.Shutdown(ctx)
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is the `admin:` section.
type Config struct {
	// Listen is the admin HTTP address; keep it on loopback unless a
	// firewall guards it. Default "127.0.0.1:9150". Empty turns the admin
	// server off.
	Listen string `koanf:"listen"`
	// Pprof serves the Go profiler at /debug/pprof/. Default false.
	Pprof bool `koanf:"pprof"`
}

// DefaultConfig returns the admin section's defaults.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:9150"}
}

// Validate returns an error naming the key with a bad value.
func (c Config) Validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("admin.listen: %q is not host:port", c.Listen)
	}
	return nil
}

// Check is one readiness condition: Ready returns nil when it holds, or
// why not.
type Check struct {
	Name  string
	Ready func() error
}

// Options configure the admin server.
type Options struct {
	// Listen is the address. Required.
	Listen string
	// Checks make up /readyz.
	Checks []Check
	// Gatherer is served at /metrics. Default prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Status, when set, answers /api/status and the status page at /.
	Status func() Snapshot
	// Pprof serves the Go profiler at /debug/pprof/ (admin.pprof).
	Pprof bool
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// mutexProfileFraction samples the mutex profile when pprof is served.
const mutexProfileFraction = 100

// Server is the admin HTTP server.
type Server struct {
	http   *http.Server
	lis    net.Listener
	logger *slog.Logger
}

// New listens on opts.Listen; Serve serves.
func New(opts Options) (*Server, error) {
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.DefaultGatherer
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	lis, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %w", opts.Listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		var report strings.Builder
		ready := true
		for _, c := range opts.Checks {
			if err := c.Ready(); err != nil {
				ready = false
				fmt.Fprintf(&report, "[-] %s: %v\n", c.Name, err)
			} else {
				fmt.Fprintf(&report, "[+] %s ok\n", c.Name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, report.String(), "not ready\n")
			return
		}
		fmt.Fprint(w, report.String(), "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	if opts.Status != nil {
		mux.Handle("GET /api/status", serveStatus(opts.Status))
		mux.Handle("GET /{$}", servePage())
		mux.Handle("GET /page/{file}", servePageAsset())
	}
	if opts.Pprof {
		// The mutex profile records nothing unless sampled: one
		// contention in mutexProfileFraction, cheap enough to leave on.
		runtime.SetMutexProfileFraction(mutexProfileFraction)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return &Server{
		http:   &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		lis:    lis,
		logger: opts.Logger,
	}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve serves until Shutdown.
func (s *Server) Serve() error {
	s.logger.Info("admin: serving", "addr", s.Addr())
	if err := s.http.Serve(s.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: serving on %s: %w", s.Addr(), err)
	}
	return nil
}

// Shutdown stops the server, letting requests in flight end until ctx is
// done.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}
