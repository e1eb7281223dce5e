// Package supervisor will own quaestor's process manager: it starts the
// worker processes configured under `supervisor.agents`, checks them with
// grpc.health.v1, restarts those that die or stop serving, and registers the
// healthy ones through routing's registry. It has no code yet; the
// supervisor mode is built on top of the etcd registry.
package supervisor
