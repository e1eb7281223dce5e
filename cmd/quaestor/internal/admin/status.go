package admin

import (
	"encoding/json"
	"net/http"
	"time"
)

// Snapshot is what /api/status answers: the state of everything this
// quaestor process runs. `quaestor status` and the status page read it.
type Snapshot struct {
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	// Etcd is the registry's state; nil in mode none.
	Etcd *EtcdStatus `json:"etcd,omitempty"`
	// Services are the routed services and their endpoints.
	Services []ServiceStatus `json:"services"`
	// Processes are the supervised instances; empty without a supervisor.
	Processes []ProcessStatus `json:"processes"`
}

// EtcdStatus is the registry discovery's state.
type EtcdStatus struct {
	Mode      string `json:"mode"`
	Ready     bool   `json:"ready"`
	Connected bool   `json:"connected"`
	Watching  bool   `json:"watching"`
	Revision  int64  `json:"revision"`
	Restarts  int64  `json:"watch_restarts"`
	Skipped   int64  `json:"entries_skipped"`
	LastError string `json:"last_error,omitempty"`
}

// ServiceStatus is one routed service.
type ServiceStatus struct {
	Name      string           `json:"name"`
	Policy    string           `json:"policy"`
	Endpoints []EndpointStatus `json:"endpoints"`
}

// EndpointStatus is one endpoint of a service, as the proxy sees it.
type EndpointStatus struct {
	Addr     string `json:"addr"`
	Source   string `json:"source"`
	ID       string `json:"id"`
	Healthy  bool   `json:"healthy"`
	Ejected  bool   `json:"ejected"`
	InFlight int64  `json:"in_flight"`
	Picks    uint64 `json:"picks"`
	// LoadRate is the reported load (known rate, else current/capacity);
	// -1 when unknown or stale.
	LoadRate    float64 `json:"load_rate"`
	Utilization float64 `json:"utilization"`
	LoadSource  string  `json:"load_source,omitempty"`
	LatencyMS   float64 `json:"latency_ewma_ms"`
}

// ProcessStatus is one supervised instance.
type ProcessStatus struct {
	Agent      string    `json:"agent"`
	Instance   int       `json:"instance"`
	State      string    `json:"state"`
	PID        int       `json:"pid"`
	Port       int       `json:"port"`
	Addr       string    `json:"addr"`
	Health     string    `json:"health"`
	Restarts   int       `json:"restarts"`
	StartedAt  time.Time `json:"started_at"`
	LastExit   string    `json:"last_exit,omitempty"`
	LastExitAt time.Time `json:"last_exit_at"`
	Registered bool      `json:"registered"`
	LastLines  []string  `json:"last_lines,omitempty"`
}

// serveStatus answers /api/status with the snapshot status returns.
func serveStatus(status func() Snapshot) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(status())
	}
}
