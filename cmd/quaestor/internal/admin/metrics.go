package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quaestor-go/quaestor/routing/registry"
)

// DiscoveryCollectors export a Discovery's state: whether it is ready,
// how often it started over, how many entries it skipped.
func DiscoveryCollectors(d *registry.Discovery) []prometheus.Collector {
	boolean := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "quaestor_etcd_discovery_ready",
			Help: "1 while discovery has listed, is watching and reaches etcd; 0 during a gap (routing then uses the last known endpoints).",
		}, func() float64 { return boolean(d.Status().Ready()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "quaestor_etcd_watch_restarts_total",
			Help: "Times discovery listed and watched again after a failed or compacted watch.",
		}, func() float64 { return float64(d.Status().Restarts) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "quaestor_etcd_entries_skipped_total",
			Help: "Malformed registry entries skipped.",
		}, func() float64 { return float64(d.Status().Skipped) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "quaestor_etcd_revision",
			Help: "The etcd revision the routing table reflects.",
		}, func() float64 { return float64(d.Status().Revision) }),
	}
}

// RegistrarCollectors export a Registrar's state.
func RegistrarCollectors(r *registry.Registrar) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "quaestor_etcd_lease_losses_total",
			Help: "Registration leases lost and granted again.",
		}, func() float64 { return float64(r.LeasesLost()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "quaestor_registered_instances",
			Help: "Instances this process keeps registered.",
		}, func() float64 { return float64(len(r.Instances())) }),
	}
}
