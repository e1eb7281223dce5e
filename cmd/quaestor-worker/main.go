// Command quaestor-worker is the example backend: it serves
// quaestor.example.v1.Echo, grpc.health.v1, server reflection and its load
// (Quaestor.LoadReporting and ORCA, through the loadreport library) on one
// port, for the tests, the benchmarks and the demo.
//
// It prints "quaestor-worker listening on HOST:PORT" on stdout once it
// listens, logs to stderr, and on SIGINT or SIGTERM reports NOT_SERVING and
// stops gracefully. Run it with --help for its flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}
