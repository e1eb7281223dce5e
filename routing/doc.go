// Package routing decides where a call goes. It owns the [Table], the single
// record of which endpoints (instances) each service has, and places each
// call on one of them.
//
// Sources feed the Table: [LoadStatic] puts the endpoints listed in the
// configuration; registries (etcd, see the registry subpackage) add theirs
// under their own source name. Every endpoint has a live [EndpointState]:
// a [Monitor] records its health (grpc.health.v1) and load (ReportLoad or
// ORCA) there, and the placement its calls in flight, latency, ORCA
// per-call reports and failures (passive health, ejection).
//
// A [Router] places calls in two ways, with the same table, health,
// ejection, policies (least-loaded by default) and retry rules, taking no
// lock per pick:
//
//   - [Router.Pick] chooses the endpoint of one attempt of a call for a
//     caller that keeps its own backend connections (the proxy's frame
//     engine); [Picked.Done] reports the attempt's end (status, ORCA
//     per-call load) and [Router.RetryDelay] says whether a failed
//     attempt may be sent again, and when.
//   - [Router.Conn] hands out, per service, a grpc.ClientConn on the
//     target "quaestor:///<service>" whose resolver pushes the service's
//     available endpoints on every change and whose balancer places each
//     call; gRPC retries its calls. The proxy uses it only for server
//     reflection.
//
// Wiring a router, and placing one attempt:
//
//	table := routing.NewTable()
//	if err := routing.LoadStatic(table, services); err != nil { ... }
//	monitor, err := routing.StartMonitor(routing.MonitorOptions{Table: table})
//	if err != nil { ... }
//	defer monitor.Close()
//	router, err := routing.NewRouter(routing.Options{Table: table, DefaultPolicy: routing.PolicyLeastLoaded})
//	if err != nil { ... }
//	defer router.Close()
//	p, err := router.Pick("quaestor.example.v1.Echo", "/quaestor.example.v1.Echo/Unary", nil, nil)
//	if err != nil { ... } // a status error for the client
//	code, load := forward(p.Addr, p.TLS)
//	p.Done(code, load)
package routing
