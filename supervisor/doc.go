// Package supervisor is quaestor's process manager: it keeps the worker
// processes of one machine (the instances of the agents configured under
// `supervisor.agents`) running, healthy and registered, as the .NET
// quaestor cluster manager did, and as supervisord, systemd or
// process-compose would.
//
// Each instance is owned by one goroutine, a small state machine:
//
//	starting   the process is started; checks that fail during
//	           heartbeat.startup_grace are not counted
//	running    every service name is SERVING; the instance is registered
//	unhealthy  a check failed: deregistered at once, restarted after
//	           heartbeat.failures failures in a row
//	stopping   deregistered, then SIGTERM to its process group, then
//	           SIGKILL after stop_timeout (restart, recycling, reload, Stop)
//	backoff    it exited (seen at once) or failed its checks; started again
//	           after an exponential backoff with full jitter
//	fatal      restart.crash_loop_starts starts within
//	           restart.crash_loop_window: started again after
//	           restart.fatal_retry, with fresh counters
//	stopped    by Stop or a reload; not started again
//
// It starts the process (placeholders {Port}, {HostName} and {Instance}
// substituted in its args and env) in a process group of its own (a job
// object on Windows), with its stdout and stderr in
// {log_dir}/{agent}-{instance}.log, rotated by size, and its last lines in
// memory. It checks it with grpc.health.v1 on 127.0.0.1:{Port}, registers
// it under every service name while every one is SERVING (ID
// {agent}-{instance}, address {HostName}:{Port}), and deregisters it at the
// first failed check, at its exit, and always before it is stopped. A run
// that lasts restart.stable_after resets the backoff and the crash-loop
// count. An instance older than its agent's recycle_after is restarted as
// soon as it reports no request in flight. Stopping sends SIGTERM
// (CTRL_BREAK on Windows) to the whole group and kills what is left after
// stop_timeout: no grandchild survives.
//
// Ports are never shared with a stranger: Start (and every start of an
// instance) first checks that no other process listens on the port, and
// refuses rather than adopt it. An agent without ports gets a free port
// per instance, chosen once and kept across restarts.
//
// Usage:
//
//	sup, err := supervisor.New(supervisor.Options{Config: cfg.Supervisor, Registry: registrar, Logger: log})
//	if err != nil { ... }
//	if err := sup.Start(ctx); err != nil { ... } // refuses ports already in use
//	...
//	err = sup.Reload(newCfg.Supervisor) // on SIGHUP: only what changed is restarted
//	for _, st := range sup.Status() { ... } // for the status page
//	...
//	err = sup.Stop(ctx) // deregister, SIGTERM, kill after stop_timeout
package supervisor
