//go:build windows

package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/windows/svc"
)

// stopWaitHint tells the service control manager how long a stop may take
// before it should consider the service hung, in milliseconds.
const stopWaitHint = uint32(DefaultStopTimeout / time.Millisecond)

// RunAsService runs run under the Windows service control manager when the
// process was started by it, and returns handled=true with run's error once
// the service has stopped. run's ctx is cancelled on a Stop or Shutdown
// request; run should then shut down and return nil (or ctx's error, which
// counts as a clean stop). Any other error stops the service with a
// service-specific exit code 1, which the recovery actions set by Install
// answer with a restart.
//
// When the process was not started by the service control manager it
// returns handled=false, and the caller carries on in the foreground. The
// service's command-line arguments (Spec.Args) reach the process as
// os.Args; name matters little, since the service runs in its own process.
func RunAsService(name string, run func(ctx context.Context) error) (handled bool, err error) {
	isService, err := svc.IsWindowsService()
	if err != nil {
		return false, fmt.Errorf("service: detecting the Windows service control manager: %w", err)
	}
	if !isService {
		return false, nil
	}
	h := &handler{run: run}
	if err := svc.Run(name, h); err != nil {
		return true, fmt.Errorf("service: running as Windows service %s: %w", name, err)
	}
	// svc.Run returns after Execute has: h.err is set.
	return true, h.err
}

// handler adapts run to svc.Handler.
type handler struct {
	run func(ctx context.Context) error
	err error // run's error, set when Execute returns
}

// Execute reports StartPending, then Running while run runs, and
// StopPending once a stop is requested; svc reports Stopped, with the
// returned exit code, after Execute returns. It keeps answering requests
// until run has returned: the goroutine running it does not outlive
// Execute.
func (h *handler) Execute(_ []string, requests <-chan svc.ChangeRequest, status chan<- svc.Status) (svcSpecificEC bool, exitCode uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.run(ctx) }()

	current := svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	status <- current
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				err = nil
			}
			h.err = err
			if err != nil {
				return true, 1
			}
			return false, 0
		case req := <-requests:
			switch req.Cmd {
			case svc.Interrogate:
				status <- current
			case svc.Stop, svc.Shutdown:
				if ctx.Err() == nil {
					current = svc.Status{State: svc.StopPending, WaitHint: stopWaitHint}
					status <- current
					cancel()
				}
			}
		}
	}
}

var _ svc.Handler = (*handler)(nil)
