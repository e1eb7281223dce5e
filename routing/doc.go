// Package routing decides where a call goes. It owns the [Table], the single
// record of which endpoints (instances) each service has, and turns it into
// one load-balanced grpc.ClientConn per service.
//
// Sources feed the Table: [LoadStatic] puts the endpoints listed in the
// configuration; registries (etcd, see the registry subpackage) add theirs
// under their own source name. Every endpoint has a live [EndpointState]:
// a [Monitor] records its health (grpc.health.v1) and load (ReportLoad or
// ORCA) there, and the balancer its calls in flight, latency, ORCA per-call
// reports and failures (passive health, ejection).
//
// A [Router] hands out, per service, a grpc.ClientConn on the target
// "quaestor:///<service>" whose resolver pushes the service's available
// endpoints on every change and whose balancer places each call with the
// service's [Policy] (least-loaded by default), taking no lock per pick.
//
//	table := routing.NewTable()
//	if err := routing.LoadStatic(table, services); err != nil { ... }
//	monitor, err := routing.StartMonitor(routing.MonitorOptions{Table: table})
//	if err != nil { ... }
//	defer monitor.Close()
//	router, err := routing.NewRouter(routing.Options{Table: table, DefaultPolicy: routing.PolicyLeastLoaded})
//	if err != nil { ... }
//	defer router.Close()
//	conn, err := router.Conn("quaestor.example.v1.Echo")
package routing
