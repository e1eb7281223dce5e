// Package grpcstop stops a gRPC server gracefully, within a time limit.
package grpcstop

import (
	"time"

	"google.golang.org/grpc"
)

// Gracefully lets running calls finish for up to timeout, then closes
// them; it reports whether the timeout ran out. A health Watch only ends
// when closed, so a server being watched takes the whole timeout.
func Gracefully(gs *grpc.Server, timeout time.Duration) (timedOut bool) {
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-stopped:
		return false
	case <-t.C:
		gs.Stop()
		<-stopped
		return true
	}
}
