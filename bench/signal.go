package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// signalContext returns a context done on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
