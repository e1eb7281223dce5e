//go:build !linux && !windows

package service

import (
	"errors"
	"fmt"
	"runtime"
)

// Install is not supported on this system: the error wraps
// errors.ErrUnsupported and says to run `quaestor run` under the system's
// own service manager.
func Install(spec Spec, opts InstallOptions) (string, error) {
	return "", unsupportedError{op: "installing"}
}

// Uninstall is not supported on this system; see Install.
func Uninstall(name string, opts InstallOptions) (string, error) {
	return "", unsupportedError{op: "uninstalling"}
}

type unsupportedError struct{ op string }

func (e unsupportedError) Error() string {
	return fmt.Sprintf("service: %s a service is not supported on %s; run `quaestor run` under your service manager (launchd, rc.d, ...)", e.op, runtime.GOOS)
}

func (unsupportedError) Is(target error) bool { return target == errors.ErrUnsupported }
