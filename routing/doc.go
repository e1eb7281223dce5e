// Package routing decides where a call goes. It owns the [Table], the single
// record of which endpoints (instances) each service has, and turns it into
// one load-balanced grpc.ClientConn per service.
//
// Sources feed the Table: [LoadStatic] puts the endpoints listed in the
// configuration; registries (etcd) add theirs under their own source name.
// A [Router] hands out, per service, a grpc.ClientConn on the target
// "quaestor:///<service>" whose resolver follows the Table and whose
// balancing policy is chosen by name, so every call is placed on its own.
//
//	table := routing.NewTable()
//	if err := routing.LoadStatic(table, services); err != nil { ... }
//	router, err := routing.NewRouter(routing.Options{Table: table, DefaultPolicy: "round-robin"})
//	if err != nil { ... }
//	defer router.Close()
//	conn, err := router.Conn("quaestor.example.v1.Echo")
package routing
