//go:build !windows

package service

import "context"

// RunAsService runs run under the Windows service control manager when the
// process was started by it. Elsewhere it does nothing and returns
// handled=false: the caller runs in the foreground, and systemd or another
// service manager delivers SIGTERM to stop it.
func RunAsService(name string, run func(ctx context.Context) error) (handled bool, err error) {
	return false, nil
}
