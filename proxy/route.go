package proxy

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	v3orcapb "github.com/cncf/xds/go/xds/data/orca/v3"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/quaestor-go/quaestor/proxy/internal/frames"
)

// CallResult is how a call through the proxy ended, for metrics.
type CallResult struct {
	// Code is the status the client received.
	Code codes.Code
	// Duration runs from the call's headers to its end.
	Duration time.Duration
	// Received and Sent count the messages the proxy received from the
	// client and sent it.
	Received, Sent int64
}

// callRouter places the engine's calls: the proxy's own services on the
// in-process server, every other service on an endpoint the Router picks.
type callRouter struct {
	router Router
	engine *frames.Engine
	own    map[string]bool
	// dialOwn connects to the in-process server of the proxy's own
	// services.
	dialOwn   func(context.Context) (net.Conn, error)
	accessLog bool
	observe   func(fullMethod string) func(CallResult)
	tracer    trace.Tracer
	logger    *slog.Logger
	dialer    net.Dialer
	// services maps a service name to its *serviceRoute.
	services sync.Map
}

// Route places one attempt of a call: on the proxy's own server, on an
// endpoint the Router picks, passing over those the engine has no
// connection to yet and those earlier attempts of the call tried, or, for
// a probe, on the endpoint it names.
func (r *callRouter) Route(req *frames.Request) (frames.Route, error) {
	if req.Local {
		return r.routeProbe(req)
	}
	service, _, err := SplitMethod(req.Method)
	if err != nil {
		return frames.Route{}, err
	}
	if r.own[service] {
		return frames.Route{Backend: r.engine.Backend(ownBackend, ownBackend, r.dialOwn, nil)}, nil
	}
	sr := r.service(service)
	skip := sr.unready
	if len(req.Tried) > 0 {
		skip = func(addr string) bool {
			for _, b := range req.Tried {
				if b == sr.backend(addr) {
					return true
				}
			}
			return sr.unready(addr)
		}
	}
	var header metadata.MD
	if sr.hashKey != "" {
		header = headerValues(req.Header, sr.hashKey)
	}
	picked, err := r.router.Pick(service, req.Method, header, skip)
	if err != nil {
		return frames.Route{}, err
	}
	return frames.Route{
		Backend: sr.backend(picked.Addr),
		Done: func(res frames.Result) {
			var load *v3orcapb.OrcaLoadReport
			if picked.WantsLoad() {
				load = serverLoad(res.Trailer)
			}
			picked.Done(res.Status.Code, load)
		},
	}, nil
}

// RetryDelay applies the Router's retry rules to a failed attempt.
func (r *callRouter) RetryDelay(req *frames.Request, attempts int) (time.Duration, bool) {
	service, _, err := SplitMethod(req.Method)
	if err != nil || r.own[service] || req.Local {
		return 0, false
	}
	return r.router.RetryDelay(service, req.Method, attempts)
}

// Observe starts what watches a call: metrics, the access log, and the
// spans of a forwarded call (whose context goes to the backend in the
// request headers).
func (r *callRouter) Observe(req *frames.Request) func(frames.Result) {
	if req.Local {
		return nil // probes (probe.go) are not the proxy's calls
	}
	var observed func(CallResult)
	if r.observe != nil {
		observed = r.observe(req.Method)
	}
	var spans *callSpans
	if r.tracer != nil {
		if service, _, err := SplitMethod(req.Method); err == nil && !r.own[service] {
			spans = r.startSpans(req, service)
		}
	}
	if observed == nil && !r.accessLog && spans == nil {
		return nil
	}
	return func(res frames.Result) {
		if observed != nil {
			observed(CallResult{Code: res.Status.Code, Duration: res.Duration, Received: res.MessagesIn, Sent: res.MessagesOut})
		}
		if r.accessLog {
			backend := "-"
			if res.Backend != nil && res.Backend.Addr() == ownBackend {
				backend = "local"
			} else if res.Backend != nil {
				backend = res.Backend.Addr()
			}
			client := "-"
			if req.Client != nil {
				client = req.Client.String()
			}
			r.logger.Info("access", "method", req.Method, "client", client, "backend", backend,
				"code", res.Status.Code.String(), "duration", res.Duration,
				"bytes_in", res.BytesIn, "bytes_out", res.BytesOut)
		}
		if spans != nil {
			spans.end(res.Status)
		}
	}
}

// ownBackend names the in-process server of the proxy's own services
// among the engine's backends.
const ownBackend = "local"

// serviceRoute is what the router keeps per service: its backends' TLS
// and the skip function Pick gets, made once.
type serviceRoute struct {
	r       *callRouter
	service string
	tls     *tls.Config
	hashKey string
	// unready rules out the endpoints the engine has no connection to
	// yet (one is being made), or cannot connect to now: as gRPC's
	// balancers pick only READY connections.
	unready func(addr string) bool
}

// service returns the serviceRoute of service.
func (r *callRouter) service(service string) *serviceRoute {
	if sr, ok := r.services.Load(service); ok {
		return sr.(*serviceRoute)
	}
	sr := &serviceRoute{r: r, service: service, tls: r.router.ServiceTLS(service), hashKey: r.router.HashKey(service)}
	sr.unready = func(addr string) bool { return !sr.backend(addr).Ready() }
	actual, _ := r.services.LoadOrStore(service, sr)
	return actual.(*serviceRoute)
}

// backend returns the engine's backend of an endpoint of the service.
func (sr *serviceRoute) backend(addr string) *frames.Backend {
	key := addr
	if sr.tls != nil {
		// The TLS of the connection is the service's.
		key = sr.service + "|" + addr
	}
	if b := sr.r.engine.LookupBackend(key); b != nil {
		return b
	}
	dialer := &sr.r.dialer
	return sr.r.engine.Backend(key, addr, func(ctx context.Context) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", addr)
	}, sr.tls)
}

// headerValues is the metadata of key in fields, for a policy that
// hashes it; nil when absent.
func headerValues(fields []hpack.HeaderField, key string) metadata.MD {
	var md metadata.MD
	for _, f := range fields {
		if f.Name == key {
			if md == nil {
				md = metadata.MD{}
			}
			md[key] = append(md[key], f.Value)
		}
	}
	return md
}
