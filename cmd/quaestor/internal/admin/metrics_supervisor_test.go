package admin

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quaestor-go/quaestor/supervisor"
)

func TestSupervisorCollector(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	statuses := []supervisor.InstanceStatus{
		{Agent: "echo", Instance: 0, State: supervisor.StateRunning, PID: 4242, StartedAt: now.Add(-90 * time.Second), Restarts: 2, Registered: true},
		// Backing off: no process, so no uptime, whatever StartedAt says.
		{Agent: "echo", Instance: 1, State: supervisor.StateBackoff, StartedAt: now.Add(-time.Hour), Restarts: 5},
		// Listed twice: counted once, rather than failing the scrape.
		{Agent: "echo", Instance: 1, State: supervisor.StateFatal, Restarts: 6},
		// A state this collector does not know yet still shows.
		{Agent: "worker", Instance: 0, State: "paused", PID: 7, StartedAt: now.Add(-time.Second)},
	}
	collector := SupervisorCollector(func() []supervisor.InstanceStatus { return statuses })
	collector.(*supervisorCollector).now = func() time.Time { return now }
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector)

	want := map[string]float64{
		`quaestor_supervisor_restarts_total{agent="echo",instance="0"}`:                  2,
		`quaestor_supervisor_registered{agent="echo",instance="0"}`:                      1,
		`quaestor_supervisor_instance_up_seconds{agent="echo",instance="0"}`:             90,
		`quaestor_supervisor_restarts_total{agent="echo",instance="1"}`:                  5,
		`quaestor_supervisor_registered{agent="echo",instance="1"}`:                      0,
		`quaestor_supervisor_instance_up_seconds{agent="echo",instance="1"}`:             0,
		`quaestor_supervisor_restarts_total{agent="worker",instance="0"}`:                0,
		`quaestor_supervisor_registered{agent="worker",instance="0"}`:                    0,
		`quaestor_supervisor_instance_up_seconds{agent="worker",instance="0"}`:           1,
		`quaestor_supervisor_instance_state{agent="worker",instance="0",state="paused"}`: 1,
	}
	for _, state := range supervisorStates {
		for _, in := range []struct{ agent, instance, current string }{
			{"echo", "0", supervisor.StateRunning},
			{"echo", "1", supervisor.StateBackoff},
			{"worker", "0", "paused"},
		} {
			v := 0.0
			if state == in.current {
				v = 1
			}
			want[`quaestor_supervisor_instance_state{agent="`+in.agent+`",instance="`+in.instance+`",state="`+state+`"}`] = v
		}
	}
	if diff := cmp.Diff(want, gatherSeries(t, reg, "quaestor_supervisor_")); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}
