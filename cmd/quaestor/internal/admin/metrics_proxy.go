package admin

import (
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/quaestor-go/quaestor/proxy"
)

// Label values for calls whose names are not worth a series of their own.
const (
	// malformedLabel is the service and method of a call whose name is not
	// "/package.Service/Method" or not valid UTF-8.
	malformedLabel = "unknown"
	// overflowLabel is the service and method of the calls to methods
	// beyond maxMethods.
	overflowLabel = "other"
)

// maxMethods bounds the distinct methods ProxyMetrics labels by name.
// Clients choose the names they call, and the proxy forwards any name, so
// without a bound a client calling made-up methods would grow the series
// without end. Calls to further methods are counted under service and
// method "other".
const maxMethods = 1000

// rpcBuckets are the duration histogram's buckets, in seconds: from half a
// millisecond to 10 s, about three per decade. Streams that outlive 10 s
// land in +Inf.
var rpcBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// codeCount is the number of gRPC codes, OK (0) to Unauthenticated (16).
const codeCount = int(codes.Unauthenticated) + 1

// ProxyMetrics counts the calls the proxy handles, per service and
// method: calls by status code, their durations, the messages each way,
// and the calls in flight per service. It is an observer of the proxy's
// calls (pass ObserveCall as proxy.Options.ObserveCall) and a
// prometheus.Collector (register it once). Every call is counted,
// forwarded or answered by the proxy itself (health, reflection, look-aside
// discovery), under the service it names.
//
// Counting a call allocates nothing: the series of each method, and the
// function that ends its calls, are made once and kept, so counting takes
// no lock and no label hashing.
type ProxyMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	messages *prometheus.CounterVec

	// methods maps a full method name to its *methodMetrics; it only
	// grows, up to maxMethods entries.
	methods sync.Map
	// mu serializes adding to methods; count is how many it holds.
	mu         sync.Mutex
	count      int
	maxMethods int
	// malformed and overflow are the shared series of calls not labelled
	// by their own names, made on first use.
	malformed, overflow func() *methodMetrics
}

// methodMetrics are one method's series, resolved once.
type methodMetrics struct {
	service, method string
	requests        *prometheus.CounterVec
	// codes holds the requests counter of each code, made on first use so
	// that only the codes seen are exported.
	codes          [codeCount]atomic.Pointer[prometheus.Counter]
	duration       prometheus.Observer
	inFlight       prometheus.Gauge
	received, sent prometheus.Counter
	// end is ended as a func value, made once: a method value made per
	// call would be an allocation per call.
	end func(proxy.CallResult)
}

// NewProxyMetrics returns the proxy's call metrics, with no call counted.
func NewProxyMetrics() *ProxyMetrics {
	m := &ProxyMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quaestor_proxy_requests_total",
			Help: "Calls the proxy finished, by service, method and gRPC status code (backend statuses pass through verbatim).",
		}, []string{"service", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "quaestor_proxy_request_duration_seconds",
			Help:    "How long calls took, from their headers to their status, streams included.",
			Buckets: rpcBuckets,
		}, []string{"service", "method"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "quaestor_proxy_in_flight",
			Help: "Calls being handled now, by service.",
		}, []string{"service"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "quaestor_proxy_messages_total",
			Help: "Messages the proxy received from its clients or sent to them, by service and method.",
		}, []string{"service", "method", "direction"}),
		maxMethods: maxMethods,
	}
	m.malformed = sync.OnceValue(func() *methodMetrics { return m.newMethodMetrics(malformedLabel, malformedLabel) })
	m.overflow = sync.OnceValue(func() *methodMetrics { return m.newMethodMetrics(overflowLabel, overflowLabel) })
	return m
}

// newMethodMetrics resolves the series of a method; its names must be
// valid UTF-8.
func (m *ProxyMetrics) newMethodMetrics(service, method string) *methodMetrics {
	mm := &methodMetrics{
		service:  service,
		method:   method,
		requests: m.requests,
		duration: m.duration.WithLabelValues(service, method),
		inFlight: m.inFlight.WithLabelValues(service),
		received: m.messages.WithLabelValues(service, method, "received"),
		sent:     m.messages.WithLabelValues(service, method, "sent"),
	}
	mm.end = mm.ended
	return mm
}

// lookup returns the series of fullMethod, making them on its first call.
func (m *ProxyMetrics) lookup(fullMethod string) *methodMetrics {
	if mm, ok := m.methods.Load(fullMethod); ok {
		return mm.(*methodMetrics)
	}
	service, method, err := proxy.SplitMethod(fullMethod)
	if err != nil || !utf8.ValidString(fullMethod) {
		// Not cached: malformed names are as many as clients make up.
		return m.malformed()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if mm, ok := m.methods.Load(fullMethod); ok {
		return mm.(*methodMetrics)
	}
	if m.count >= m.maxMethods {
		return m.overflow()
	}
	mm := m.newMethodMetrics(service, method)
	m.methods.Store(fullMethod, mm)
	m.count++
	return mm
}

// finished counts a call that ended with code.
func (mm *methodMetrics) finished(code codes.Code) {
	if int(code) >= codeCount {
		// Backends may send any number; gRPC reads unknown ones as
		// UNKNOWN, and so does the code label.
		code = codes.Unknown
	}
	counter := mm.codes[code].Load()
	if counter == nil {
		c := mm.requests.WithLabelValues(mm.service, mm.method, code.String())
		counter = &c
		mm.codes[code].Store(counter)
	}
	(*counter).Inc()
}

// ObserveCall counts a call through the proxy, forwarded or to its own
// services (pass it as proxy.Options.ObserveCall): in flight until it
// ends, then its duration, status code, and the messages it received and
// sent. The proxy calls the function returned as the call ends, before
// the client can see its status.
func (m *ProxyMetrics) ObserveCall(fullMethod string) func(proxy.CallResult) {
	mm := m.lookup(fullMethod)
	mm.inFlight.Inc()
	return mm.end
}

// ended counts the end of a call.
func (mm *methodMetrics) ended(res proxy.CallResult) {
	mm.inFlight.Dec()
	mm.duration.Observe(res.Duration.Seconds())
	mm.received.Add(float64(res.Received))
	mm.sent.Add(float64(res.Sent))
	mm.finished(res.Code)
}

// Describe sends the descriptors of every series.
func (m *ProxyMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.duration.Describe(ch)
	m.inFlight.Describe(ch)
	m.messages.Describe(ch)
}

// Collect sends the current value of every series.
func (m *ProxyMetrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.duration.Collect(ch)
	m.inFlight.Collect(ch)
	m.messages.Collect(ch)
}

var _ prometheus.Collector = (*ProxyMetrics)(nil)
