//go:build linux

// Command soak runs quaestor for a long while under steady load while its
// backends register, deregister, fail and flap, and checks that the proxy's
// memory and goroutines stay flat (`make soak`: 10 minutes).
//
// It builds ./cmd/quaestor, starts `quaestor run` on a generated
// configuration (embedded etcd in a temporary directory, proxy and admin on
// free loopback ports, no supervised workers), and starts echo backends as
// child processes (this program re-executed), each registering itself in
// that etcd under its own lease. Every -churn it adds a backend (restarting
// a killed one on its port first), SIGKILLs one, flaps one NOT_SERVING,
// deletes one's key, or stops one with SIGTERM, keeping at least
// -min-serving registered and serving. Meanwhile it offers -rate unary calls
// per second and a few long server streams, and every -sample reads the
// proxy's RSS (/proc) and its admin /metrics.
//
// At the end it writes samples.csv, soak.png and summary.md to -out, prints
// the summary, and exits 1 if the proxy died, or if after -warmup its
// goroutines, heap or RSS rose beyond the stated tolerance.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if isBackend() {
		os.Exit(runBackend(os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
}

// run parses args and soaks.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	return soak(ctx, cfg, stdout, stderr)
}
