package admin

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quaestor-go/quaestor/routing"
)

// RoutingCollector exports the live state of every endpoint of every
// service in table, read when scraped: calls in flight and placed, active
// and passive health, the last load report and the latency average. An
// endpoint's series go when it leaves the table.
func RoutingCollector(table *routing.Table) prometheus.Collector {
	endpoint := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"service", "addr"}, nil)
	}
	return &routingCollector{
		table: table,
		now:   time.Now,
		inFlight: endpoint("quaestor_endpoint_in_flight",
			"Calls the proxy has on the endpoint now."),
		picks: endpoint("quaestor_endpoint_picks_total",
			"Calls the balancer placed on the endpoint."),
		healthy: endpoint("quaestor_endpoint_healthy",
			"1 when active health checks say the endpoint serves, else 0."),
		ejected: endpoint("quaestor_endpoint_ejected",
			"1 while passive health has ejected the endpoint after failed calls, else 0."),
		ejections: endpoint("quaestor_endpoint_ejections_total",
			"Times passive health ejected the endpoint."),
		loadRate: endpoint("quaestor_endpoint_load_rate",
			"The endpoint's last reported load (its known load rate, else current/capacity requests); absent without a report giving one."),
		utilization: endpoint("quaestor_endpoint_utilization",
			"The endpoint host's last reported CPU use, 0 to 1; absent without a report."),
		loadTime: endpoint("quaestor_endpoint_load_report_timestamp_seconds",
			"When the endpoint's last load report was received, in Unix seconds; routing ignores reports older than load.max_age."),
		latency: endpoint("quaestor_endpoint_latency_ewma_seconds",
			"Moving average of the durations of calls on the endpoint (about the last 10); 0 before the first call ends."),
	}
}

type routingCollector struct {
	table *routing.Table
	// now tells whether an ejection is still on.
	now func() time.Time

	inFlight, picks, healthy, ejected *prometheus.Desc
	ejections                         *prometheus.Desc
	loadRate, utilization, loadTime   *prometheus.Desc
	latency                           *prometheus.Desc
}

func (c *routingCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inFlight, c.picks, c.healthy, c.ejected, c.ejections, c.loadRate, c.utilization, c.loadTime, c.latency} {
		ch <- d
	}
}

func (c *routingCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for _, service := range c.table.Services() {
		eps, _ := c.table.Endpoints(service)
		for _, ep := range eps {
			st := ep.State
			if st == nil {
				continue
			}
			labels := []string{labelValue(service), labelValue(ep.Addr)}
			gauge := func(d *prometheus.Desc, v float64) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
			}
			gauge(c.inFlight, float64(st.InFlight()))
			ch <- prometheus.MustNewConstMetric(c.picks, prometheus.CounterValue, float64(st.Picks()), labels...)
			gauge(c.healthy, boolValue(st.Healthy()))
			gauge(c.ejected, boolValue(st.Ejected(now)))
			ch <- prometheus.MustNewConstMetric(c.ejections, prometheus.CounterValue, float64(st.Ejections()), labels...)
			gauge(c.latency, st.LatencyEWMA().Seconds())
			if r := st.Load(); r != nil {
				if rate := r.LoadRate(); rate >= 0 {
					gauge(c.loadRate, rate)
				}
				gauge(c.utilization, r.Utilization)
				if !r.Time.IsZero() {
					gauge(c.loadTime, float64(r.Time.UnixNano())/1e9)
				}
			}
		}
	}
}

// boolValue is 1 for true, 0 for false.
func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// labelValue makes s a valid label value. Service names, addresses and
// agent names come from registrations and configuration, and a label value
// that is not UTF-8 would fail the whole scrape.
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
