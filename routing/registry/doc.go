// Package registry keeps service instances in etcd: a [Registrar]
// registers instances under one lease per process and keeps them there, a
// [Discovery] follows every registration of a scope into a routing.Table,
// and [StartEmbedded] runs the single-node etcd that quaestor uses when no
// external cluster is configured.
//
// One key per instance, with the registrar's lease:
//
//	{prefix}/services/{scope}/{service}/{instance-id} → {"Op":0,"Addr":"host:port","Metadata":{...}}
//
// The value is the JSON of etcd's naming/endpoints format, so a stock
// grpc-go client with etcd's resolver finds the same instances at
// "etcd:///{prefix}/services/{scope}/{service}".
//
//	client, err := registry.NewClient(cfg.Etcd)
//	reg, err := registry.NewRegistrar(registry.RegistrarOptions{Client: client, Prefix: "/quaestor", Scope: "default"})
//	err = reg.Register(ctx, registry.Instance{Service: "pkg.Svc", Addr: "10.0.0.5:5161"})
//	defer reg.Close() // revokes the lease: the instances disappear at once
//
//	disc, err := registry.StartDiscovery(registry.DiscoveryOptions{Client: client, Prefix: "/quaestor", Scope: "default", Table: table})
//	defer disc.Close()
package registry
