package admin

import (
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quaestor-go/quaestor/supervisor"
)

// supervisorStates are the states every instance has a
// quaestor_supervisor_instance_state series for, so that a state an
// instance leaves reads 0 rather than vanishing.
var supervisorStates = []string{
	supervisor.StateStarting,
	supervisor.StateRunning,
	supervisor.StateUnhealthy,
	supervisor.StateBackoff,
	supervisor.StateStopping,
	supervisor.StateStopped,
	supervisor.StateFatal,
}

// SupervisorCollector exports the supervised instances that status lists
// (Supervisor.Status), read when scraped: restarts, state, uptime and
// registration, labelled by agent and instance number.
func SupervisorCollector(status func() []supervisor.InstanceStatus) prometheus.Collector {
	instance := []string{"agent", "instance"}
	return &supervisorCollector{
		status: status,
		now:    time.Now,
		restarts: prometheus.NewDesc("quaestor_supervisor_restarts_total",
			"Times the instance's process was started again after its first start.", instance, nil),
		state: prometheus.NewDesc("quaestor_supervisor_instance_state",
			"1 for the instance's current state, 0 for the others.", []string{"agent", "instance", "state"}, nil),
		up: prometheus.NewDesc("quaestor_supervisor_instance_up_seconds",
			"How long the instance's current process has run; 0 while it has none.", instance, nil),
		registered: prometheus.NewDesc("quaestor_supervisor_registered",
			"1 while every service name of the instance is registered, else 0.", instance, nil),
	}
}

type supervisorCollector struct {
	status func() []supervisor.InstanceStatus
	// now measures uptimes.
	now func() time.Time

	restarts, state, up, registered *prometheus.Desc
}

func (c *supervisorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.restarts
	ch <- c.state
	ch <- c.up
	ch <- c.registered
}

func (c *supervisorCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	type key struct {
		agent    string
		instance int
	}
	seen := make(map[key]bool)
	for _, in := range c.status() {
		agent := labelValue(in.Agent)
		// A series collected twice would fail the whole scrape.
		k := key{agent, in.Instance}
		if seen[k] {
			continue
		}
		seen[k] = true
		labels := []string{agent, strconv.Itoa(in.Instance)}
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(in.Restarts), labels...)
		ch <- prometheus.MustNewConstMetric(c.registered, prometheus.GaugeValue, boolValue(in.Registered), labels...)
		var up time.Duration
		if in.PID != 0 && !in.StartedAt.IsZero() {
			up = max(now.Sub(in.StartedAt), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up.Seconds(), labels...)
		for _, state := range supervisorStates {
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, boolValue(in.State == state), agent, labels[1], state)
		}
		if in.State != "" && !slices.Contains(supervisorStates, in.State) {
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, 1, agent, labels[1], labelValue(in.State))
		}
	}
}
