// Package loadreport is the library Go backends import to report their load
// to quaestor. It owns:
//
//   - counting the calls a server is running (interceptors that skip the
//     health, reflection and load-reporting services themselves);
//   - sampling the machine's CPU and memory use (from /proc on Linux, from
//     kernel32 on Windows; other systems report 0);
//   - serving the quaestor Quaestor.LoadReporting.LoadReportingGrpc service,
//     wire-compatible with the .NET quaestor workers and their clients;
//   - reporting the same figures over ORCA: an ORCA load report in the
//     trailer of every call, and the ORCA out-of-band service
//     xds.service.orca.v3.OpenRcaService.
//
// Adopting it is three lines around the usual server setup:
//
//	rep := loadreport.New(loadreport.Options{Capacity: 100})
//	defer rep.Close()
//	srv := grpc.NewServer(rep.ServerOptions()...)
//	if err := rep.Register(srv); err != nil { ... }
//	// register the application's services, then srv.Serve(lis)
//
// A backend that knows its own load better than "calls running / capacity"
// (a queue length, a licence count) says so with SetKnownLoadRate.
//
// # The figures
//
// ReportLoad answers, for any scope and service name (one process is one
// load, whichever of its services quaestor asks about):
//
//   - timestamp_ticks: when the answer was made, in .NET ticks (100 ns since
//     0001-01-01 UTC);
//   - known_load_rate: the rate given to SetKnownLoadRate, or -1 when none is
//     set, which tells quaestor to use current_requests / request_capacity;
//   - server_stats.request_capacity: Options.Capacity (0 = unknown);
//   - server_stats.current_requests: the calls running now;
//   - server_stats.server_utilization: the machine's CPU use over the last
//     sampling interval as a fraction, 0 to 1 (as the .NET workers report it,
//     not a percentage);
//   - server_stats.server_memory_usage_percent: the machine's memory in use
//     (total minus available) as a percentage, 0 to 100.
//
// CPU and memory are the machine's, not the process's or a cgroup's:
// quaestor places calls across bare-metal hosts and VMs, where the machine is
// what runs out.
//
// The ORCA reports carry the same figures in ORCA's units: cpu_utilization
// (0 to 1), mem_utilization (memory as a fraction, 0 to 1),
// application_utilization (the known load rate, only while one is set),
// rps_fractional and eps (calls started and calls failed per second over the
// last sampling interval), named_metrics CurrentRequestsMetric and
// RequestCapacityMetric (the latter only when the capacity is known) and
// utilization RequestsUtilization (current / capacity, at most 1, only when
// the capacity is known). A handler may add its own per-call request costs
// through orca.CallMetricsRecorderFromContext.
package loadreport
